-- Issue 16: source_state held the MongoDB source's last fingerprint, written on every read and
-- never read back (change detection compares live fingerprints: source_change_sensor and the
-- `source_fingerprint` metadata of raw/documents). Dropped rather than kept up to date.
DROP TABLE IF EXISTS source_state;

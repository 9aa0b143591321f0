-- Issue 15: lag per stage needs to know since when a chunk waits for its vector. A chunk row is
-- written when its document is (re-)chunked; rows that exist before this migration get its time.
ALTER TABLE chunks ADD COLUMN chunked_at timestamptz NOT NULL DEFAULT now();

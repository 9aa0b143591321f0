-- Issue 15: lag per stage needs to know since when a chunk waits for its vector. A chunk row is
-- written when its document is (re-)chunked; rows that exist before this migration get its time.
ALTER TABLE chunks ADD COLUMN chunked_at timestamptz NOT NULL DEFAULT now();

-- `twin rollback` moves the champion alias back and records it here as kind 'rollback', so that a
-- second rollback walks further back along the promotions instead of undoing the first.
ALTER TABLE promotions ADD COLUMN kind text NOT NULL DEFAULT 'promotion' CHECK (kind IN ('promotion', 'rollback'));

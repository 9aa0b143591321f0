-- What cleaning removed from each document: page-chrome lines by family ("share", "subscribe",
-- "repeated", ...) and a few samples, so every run can say how much chrome it dropped and why.
-- The raw document keeps everything; a change of the rules re-cleans from it.
ALTER TABLE cleaned_documents ADD COLUMN IF NOT EXISTS removed jsonb NOT NULL DEFAULT '{}'::jsonb;

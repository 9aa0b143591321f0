-- Issue 12: the evaluation measures style (authorship attribution, Burrows' Delta) and the gate
-- uses it; the MiniLM cosine is topical similarity, named for what it measures. Served answers
-- record their grounding (share of answer sentences supported by a cited chunk).
ALTER TABLE evaluations RENAME COLUMN style_similarity TO topical_similarity;
ALTER TABLE evaluations RENAME COLUMN reference_style_similarity TO reference_topical_similarity;
ALTER TABLE evaluations
    ADD COLUMN attribution_share            double precision,  -- challenger answers attributed to the author (0-1)
    ADD COLUMN reference_attribution_share  double precision,
    ADD COLUMN base_attribution_share       double precision,
    ADD COLUMN delta                        double precision,  -- Burrows' Delta to the author's held-out text
    ADD COLUMN reference_delta              double precision,
    ADD COLUMN base_delta                   double precision,
    ADD COLUMN style_measurable             boolean NOT NULL DEFAULT false,
    ADD COLUMN generation_examples          integer;

ALTER TABLE prompt_logs ADD COLUMN grounding double precision;  -- 0-1; NULL when not measured

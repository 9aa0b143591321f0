-- Continuous training: dataset versions, fine-tuned model versions, their evaluations and
-- promotions. MLflow holds the runs and artifacts; these tables let SQL (and dbt) see the history.

-- One row per dataset version; the fingerprint covers the cleaned snapshot and the generator settings.
CREATE TABLE dataset_versions (
    twin                  text NOT NULL REFERENCES twins (slug),
    kind                  text NOT NULL CHECK (kind IN ('instruct', 'preference')),
    fingerprint           text NOT NULL,
    snapshot_fingerprint  text NOT NULL,
    generator             text NOT NULL,
    generator_settings    jsonb NOT NULL,
    documents             integer NOT NULL,
    test_documents        integer NOT NULL,
    train_rows            integer NOT NULL,
    test_rows             integer NOT NULL,
    failures              integer NOT NULL DEFAULT 0,
    uri                   text NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (twin, kind, fingerprint)
);

-- Which cleaned documents (and which of their versions) a dataset version was made from.
CREATE TABLE dataset_documents (
    twin          text NOT NULL,
    kind          text NOT NULL,
    fingerprint   text NOT NULL,
    document_id   bigint NOT NULL,
    content_hash  text NOT NULL,
    split         text NOT NULL CHECK (split IN ('train', 'test')),
    rows          integer NOT NULL,
    PRIMARY KEY (twin, kind, fingerprint, document_id),
    FOREIGN KEY (twin, kind, fingerprint) REFERENCES dataset_versions ON DELETE CASCADE
);

-- One row per registered model version (an MLflow registered model per twin).
CREATE TABLE model_versions (
    registered_model     text NOT NULL,
    version              integer NOT NULL,
    twin                 text NOT NULL REFERENCES twins (slug),
    mlflow_run_id        text NOT NULL,
    dataset_fingerprint  text NOT NULL,
    base_model           text NOT NULL,
    profile              text NOT NULL,           -- 'cpu-demo' | 'gpu'
    training_signature   text NOT NULL,           -- profile settings + base model, as JSON
    train_steps          integer NOT NULL,
    train_loss           double precision,
    train_seconds        double precision NOT NULL,
    model_uri            text NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (registered_model, version)
);

-- One row per evaluation of a challenger against the champion (or the base model).
CREATE TABLE evaluations (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    registered_model      text NOT NULL,
    version               integer NOT NULL,
    twin                  text NOT NULL,
    dataset_fingerprint   text NOT NULL,
    reference             text NOT NULL,          -- 'base' or 'champion v<N>'
    examples              integer NOT NULL,
    perplexity            double precision NOT NULL,
    reference_perplexity  double precision NOT NULL,
    base_perplexity       double precision NOT NULL,
    style_similarity      double precision,
    reference_style_similarity double precision,
    mean_answer_words     double precision,
    promoted              boolean NOT NULL,
    reason                text NOT NULL,
    report                jsonb NOT NULL,
    evaluated_at          timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (registered_model, version) REFERENCES model_versions ON DELETE CASCADE
);

-- Alias moves: which version became champion, replacing which.
CREATE TABLE promotions (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    registered_model  text NOT NULL,
    version           integer NOT NULL,
    twin              text NOT NULL,
    previous_version  integer,
    promoted_at       timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (registered_model, version) REFERENCES model_versions ON DELETE CASCADE
);

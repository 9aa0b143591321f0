select
    id as evaluation_id,
    registered_model || ':' || version as model_version_id,
    registered_model,
    version,
    twin,
    dataset_fingerprint,
    reference,
    examples,
    perplexity,
    reference_perplexity,
    base_perplexity,
    style_similarity,
    reference_style_similarity,
    mean_answer_words,
    promoted,
    reason,
    evaluated_at
from {{ source('platform', 'evaluations') }}

-- One row per model version: training figures, its latest evaluation, promotions, champion now.
with latest_evaluation as (
    select distinct on (model_version_id) *
    from {{ ref('stg_evaluations') }}
    order by model_version_id, evaluated_at desc, evaluation_id desc
),
promotion_totals as (
    select model_version_id, count(*) as promotions, max(promoted_at) as last_promoted_at
    from {{ ref('stg_promotions') }}
    group by model_version_id
),
current_champion as (
    select distinct on (registered_model) registered_model, model_version_id
    from {{ ref('stg_promotions') }}
    order by registered_model, promoted_at desc, promotion_id desc
)
select
    m.model_version_id,
    m.registered_model,
    m.version,
    m.twin,
    m.dataset_fingerprint,
    d.kind as dataset_kind,
    d.total_rows as dataset_rows,
    m.base_model,
    m.profile,
    m.train_steps,
    m.train_loss,
    m.train_seconds,
    m.created_at,
    e.reference as evaluated_against,
    e.examples as evaluation_examples,
    e.perplexity,
    e.reference_perplexity,
    e.base_perplexity,
    e.topical_similarity,
    e.reference_topical_similarity,
    e.attribution_share,
    e.reference_attribution_share,
    e.delta,
    e.style_measurable,
    e.promoted as evaluation_promoted,
    e.reason as evaluation_reason,
    e.evaluated_at,
    coalesce(p.promotions, 0) as promotions,
    p.last_promoted_at,
    c.model_version_id is not null as is_champion
from {{ ref('stg_model_versions') }} m
left join {{ ref('dataset_history') }} d
    on d.twin = m.twin and d.fingerprint = m.dataset_fingerprint
left join latest_evaluation e using (model_version_id)
left join promotion_totals p using (model_version_id)
left join current_champion c using (model_version_id)

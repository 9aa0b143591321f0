-- One row per dataset version, numbered per twin and kind in creation order.
with linked as (
    select
        dataset_version_id,
        count(*) as linked_documents,
        sum(rows) filter (where split = 'train') as linked_train_rows,
        sum(rows) filter (where split = 'test') as linked_test_rows
    from {{ ref('stg_dataset_documents') }}
    group by dataset_version_id
)
select
    v.dataset_version_id,
    v.twin,
    v.kind,
    v.fingerprint,
    row_number() over (partition by v.twin, v.kind order by v.created_at, v.fingerprint) as version_number,
    v.generator,
    v.documents,
    v.test_documents,
    v.train_rows,
    v.test_rows,
    v.train_rows + v.test_rows as total_rows,
    v.failures,
    coalesce(l.linked_documents, 0) as linked_documents,
    v.created_at
from {{ ref('stg_dataset_versions') }} v
left join linked l using (dataset_version_id)

{% for kind in ['instruct', 'preference'] %}
select
    twin || '/' || kind || '/' || fingerprint as dataset_version_id,
    twin,
    kind,
    fingerprint,
    snapshot_fingerprint,
    generator,
    documents,
    test_documents,
    train_rows,
    test_rows,
    failures,
    uri,
    created_at
from {{ source('platform', kind ~ '_dataset_versions') }}
where kind = '{{ kind }}'
{% if not loop.last %}union all{% endif %}
{% endfor %}

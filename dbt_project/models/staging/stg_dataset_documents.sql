{% for kind in ['instruct', 'preference'] %}
select
    twin || '/' || kind || '/' || fingerprint as dataset_version_id,
    twin || '/' || kind || '/' || fingerprint || '/' || document_id as dataset_document_id,
    twin,
    kind,
    fingerprint,
    document_id,
    split,
    rows
from {{ source('platform', kind ~ '_dataset_documents') }}
where kind = '{{ kind }}'
{% if not loop.last %}union all{% endif %}
{% endfor %}

select
    chunk_id,
    document_id,
    twin,
    embedding is not null as is_embedded,
    embedding_model,
    embedded_at
from {{ source('platform', 'chunk_embeddings') }}

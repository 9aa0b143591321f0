"""`twin search`, `ask` and `embed`: reading the platform the way the serving API does."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Literal

from orchestration.cli.common import known_twin, platform_database
from twin.errors import TwinError
from twin.grounding import CITATION_THRESHOLD
from twin.settings import Settings

if TYPE_CHECKING:
    from twin.retrieval import RetrievedChunk

Category = Literal["article", "post", "repository"]
SearchMode = Literal["hybrid", "vector", "keyword"]


def search(settings: Settings, query: str, *, twin: str | None = None, category: Category | None = None,
           mode: SearchMode = "hybrid", self_query: bool = True, k: int = 5, as_json: bool = False) -> int:
    from twin.embedding import load_query_encoder
    from twin.query import QueryFilters
    from twin.retrieval import no_results_reason
    from twin.retrieval import search as retrieve

    if not 1 <= k <= 100:
        raise TwinError(f"-k must be between 1 and 100 (got {k}).", "pass -k 5, for example.")
    with platform_database(settings).connect() as conn:
        slug = known_twin(conn, twin) if twin else None
        embedder = load_query_encoder(settings.embedding_model)
        result = retrieve(conn, embedder, query, k=k, mode=mode,
                          filters=QueryFilters(twin=slug, category=category), self_query=self_query)
        reason = no_results_reason(conn, embedder.model_id, result.filters.twin) if not result.chunks else ""
    if as_json:
        print(json.dumps({"query": result.queries[0], "mode": result.mode, "filters": result.filters.describe(),
                          "notes": list(result.notes), "results": [chunk.as_json() for chunk in result.chunks]},
                         ensure_ascii=False, indent=2))
        return 0
    shown = {name: value for name, value in result.filters.describe().items() if value}
    filters = ", ".join(f"{name} {'..'.join(str(v or '') for v in value) if isinstance(value, list) else value}"
                        for name, value in shown.items()) or "none"
    print(f"{result.mode} search; filters: {filters}")
    for note in result.notes:
        print(f"  note: {note}")
    if not result.chunks:
        print(f"no results: {reason}")
    for rank, chunk in enumerate(result.chunks, start=1):
        _print_hit(rank, chunk)
    print("(similarity: cosine similarity of the chunk to the question)")
    return 0


def ask(settings: Settings, question: str, *, twin: str | None = None, category: Category | None = None,
        k: int | None = None, max_tokens: int | None = None, as_json: bool = False) -> int:
    from serving.rag import answer_question

    if k is not None and not 1 <= k <= 20:
        raise TwinError(f"-k must be between 1 and 20 (got {k}).", "pass -k 5, for example.")
    result = answer_question(settings, question, twin, category=category, k=k, max_tokens=max_tokens)
    if as_json:
        print(json.dumps(result.as_json(), ensure_ascii=False, indent=2))
        return 0
    print(f"answered by {result.answered_by}")
    print()
    print(result.answer or "(the model returned no text)")
    print()
    if result.grounded is not None:
        grounded = result.grounded
        supported = sum(1 for sentence in grounded.sentences if sentence.supported)
        print(f"grounding: {supported} of {len(grounded.sentences)} sentences supported by a cited source "
              f"({grounded.grounding:.0%}; citation threshold {CITATION_THRESHOLD} cosine)")
    version = f" v{result.model_version}" if result.model_version else ""
    print(f"sources ({result.model_name}{version}, {result.backend}):")
    if not result.sources:
        from twin.retrieval import RELEVANCE_THRESHOLD, no_results_reason

        with platform_database(settings).connect() as conn:
            reason = no_results_reason(conn, settings.embedding_model, result.twin)
        if reason.startswith("nothing matched"):
            reason = f"no chunk is similar enough to the question (similarity >= {RELEVANCE_THRESHOLD})"
        print(f"  none: {reason}")
    for source in result.sources:
        print(f"  [{source.number}] {source.title} - {source.author} ({source.category}) {source.url}")
    return 0


def embed(settings: Settings, text: str) -> int:
    """The query vector of `text` as a pgvector literal (for psql and the analyst SQL)."""
    from twin.analyst import vector_literal
    from twin.embedding import load_query_encoder
    from twin.retrieval import encode_queries

    print(vector_literal(encode_queries(load_query_encoder(settings.embedding_model), [text])[0].tolist()))
    return 0


def _print_hit(rank: int, hit: RetrievedChunk) -> None:
    date = hit.published_at.isoformat() if hit.published_at else "undated"
    snippet = " ".join(hit.text.split())
    snippet = snippet if len(snippet) <= 240 else snippet[:237] + "..."
    print(f"{rank}. [{hit.similarity:.3f}] {hit.title} - {hit.author} ({hit.category}, {date})")
    print(f"   {hit.url}")
    print(f"   {snippet}")

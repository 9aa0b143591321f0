import json

import pytest

from tests.conftest import SAMPLE_CORPUS
from twin.chunking import ChunkingPolicy, chunk_document
from twin.cleaning import clean_document
from twin.documents import Category
from twin.embedding import Embedder


@pytest.fixture(scope="module")
def policy(embedder: Embedder) -> ChunkingPolicy:
    return ChunkingPolicy(max_tokens=embedder.max_tokens)


def test_the_window_is_the_models_sequence_length_minus_special_tokens(embedder: Embedder) -> None:
    assert embedder.max_tokens == 254
    assert embedder.dimension == 384


def test_every_sample_chunk_fits_the_window_and_no_text_is_lost(embedder: Embedder, policy: ChunkingPolicy) -> None:
    for path in sorted(SAMPLE_CORPUS.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            category = Category(record["category"])
            content = clean_document(category, record["content"])
            chunks = chunk_document(category, content, record["title"], embedder.count_tokens, policy)
            assert chunks, record["url"]
            assert [chunk.position for chunk in chunks] == list(range(len(chunks)))
            for chunk in chunks:
                assert chunk.text.strip()
                assert chunk.token_count == embedder.count_tokens([chunk.text])[0] <= policy.max_tokens
            # chunking only splits: every word of the document is in some chunk, in order
            assert "".join("".join(c.text.split()) for c in chunks) == "".join(content.split())


def test_article_chunks_follow_sections_and_keep_headings_with_their_text(embedder: Embedder, policy: ChunkingPolicy) -> None:
    intro = "Autovacuum is a background worker. " * 5
    body = "Dead tuples pile up when a long transaction holds the horizon back. " * 60
    article = f"## Why tables bloat\n\n{intro.strip()}\n\n## Fixing it\n\n{body.strip()}"
    chunks = chunk_document(Category.ARTICLE, article, "t", embedder.count_tokens, policy)
    assert chunks[0].text.startswith("## Why tables bloat\n\nAutovacuum")
    assert "Fixing it" not in chunks[0].text  # a new section starts a new chunk
    assert chunks[1].text.startswith("## Fixing it\n\nDead tuples")
    assert len(chunks) > 3 and all(chunk.token_count <= policy.max_tokens for chunk in chunks)


def test_a_short_post_is_one_chunk_and_a_long_one_becomes_overlapping_windows(embedder: Embedder, policy: ChunkingPolicy) -> None:
    short = "Shipped the outbox relay today. Zero lost events in a week."
    assert [c.text for c in chunk_document(Category.POST, short, "", embedder.count_tokens, policy)] == [short]
    sentences = [f"Sentence number {i} talks about reef fish counts." for i in range(60)]
    chunks = chunk_document(Category.POST, " ".join(sentences), "", embedder.count_tokens, policy)
    assert len(chunks) > 2
    assert all(chunk.token_count <= policy.post_window_tokens + 20 for chunk in chunks)
    last_of_first = chunks[0].text.split(". ")[-1]
    assert chunks[1].text.startswith(last_of_first.rstrip("."))  # one sentence of overlap


def test_code_splits_at_top_level_definitions_with_their_comments_and_exact_whitespace(embedder: Embedder) -> None:
    policy = ChunkingPolicy(max_tokens=embedder.max_tokens, code_target_tokens=40)
    functions = [
        f"/// Doc comment for step {i}.\npub fn step_{i}(grid: &mut Grid) -> usize {{\n"
        f"    let mut alive = 0;\n    for cell in grid.cells() {{\n        alive += cell.neighbours({i});\n    }}\n    alive\n}}"
        for i in range(4)
    ]
    code = "use std::fmt;\n\n" + "\n\n".join(functions)
    chunks = chunk_document(Category.REPOSITORY, code, "src/automata.rs", embedder.count_tokens, policy)
    bodies = [chunk.text for chunk in chunks]
    for i, function in enumerate(functions):
        assert any(function in body for body in bodies), f"step_{i} was cut apart"
    assert all(body.lstrip().startswith(("use", "///")) for body in bodies)


def test_markdown_files_in_a_repository_are_chunked_as_prose(embedder: Embedder, policy: ChunkingPolicy) -> None:
    readme = "# reefcount\n\nCounts fish.\n\n## Install\n\nnpm install reefcount"
    chunks = chunk_document(Category.REPOSITORY, readme, "README.md", embedder.count_tokens, policy)
    assert chunks[-1].text.startswith("## Install")


def test_text_without_any_break_is_still_cut_to_the_window(embedder: Embedder, policy: ChunkingPolicy) -> None:
    unbroken = " ".join(f"reef{i % 97} transect" for i in range(2000))  # no newline, no full stop
    chunks = chunk_document(Category.ARTICLE, unbroken, "", embedder.count_tokens, policy)
    assert len(chunks) > 2
    assert all(0 < chunk.token_count <= policy.max_tokens for chunk in chunks)

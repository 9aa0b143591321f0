"""Grounded answers: never end mid-word; inline [n] citations attached only above the threshold
(real embedding model, real sample text); the grounding figure."""

import json
from pathlib import Path

from twin.grounding import CITATION_THRESHOLD, ground, split_sentences, trim_to_sentence

REPO = Path(__file__).resolve().parents[1]


def _article(slug: str, index: int = 0) -> str:
    rows = [json.loads(line) for line in (REPO / "sample_corpus" / f"{slug}.jsonl").read_text().splitlines()]
    return [row["content"] for row in rows if row["category"] == "article"][index]


def test_answers_cut_anywhere_never_end_mid_word() -> None:
    text = " ".join(_article("maya-lindqvist").split())[:1500]
    for cut in range(1, len(text), 7):  # every 7th character: mid-word, mid-sentence, after a stop
        trimmed = trim_to_sentence(text[:cut])
        body = trimmed.removesuffix("…")
        assert text.startswith(body), (cut, trimmed)
        if len(text[:cut].split()) == 1:
            assert trimmed == ""  # one word, perhaps partial: nothing is safe to keep
            continue
        if trimmed.endswith("…"):  # no complete sentence yet: ends after a whole word
            assert len(body) < cut and text[len(body)] in " ,;:-", (cut, trimmed)
        else:
            assert trimmed[-1] in ".!?\"')]”’`", (cut, trimmed)
    assert trim_to_sentence("Vacuum early. Then autovac") == "Vacuum early."
    assert trim_to_sentence("Vacuum early [1]. Watch the table") == "Vacuum early [1]."
    assert trim_to_sentence("   ") == "" and trim_to_sentence("autovac") == ""


def test_citations_are_attached_only_above_the_threshold(embedder) -> None:
    reef, postgres = _article("tomas-herrera"), _article("maya-lindqvist")
    chunks = [(1, " ".join(reef.split("\n\n")[0:3])), (2, " ".join(postgres.split("\n\n")[0:3]))]
    from_postgres = next(s for s in split_sentences(postgres.split("\n\n")[0]) if len(s.split()) > 6)
    answer = f"{from_postgres} My cat prefers tuna on rainy Sundays."
    grounded = ground(answer, chunks, embedder)
    first, second = grounded.sentences
    assert first.citations == [2] and first.attached and first.similarity >= CITATION_THRESHOLD
    assert second.citations == [] and not second.supported  # nothing similar enough: no citation invented
    assert grounded.grounding == 0.5
    assert "[2]" in grounded.text and grounded.text.endswith("Sundays.")
    strict = ground(answer, chunks, embedder, threshold=0.99)
    assert all(not s.citations for s in strict.sentences) and strict.grounding == 0.0


def test_model_citations_are_kept_when_real_and_dropped_when_invented(embedder) -> None:
    postgres = _article("maya-lindqvist")
    chunks = [(1, " ".join(postgres.split("\n\n")[0:3]))]
    sentence = next(s for s in split_sentences(postgres.split("\n\n")[0]) if len(s.split()) > 6).rstrip(".")
    grounded = ground(f"{sentence} [1]. Nothing else here matters at all [7].", chunks, embedder)
    first, second = grounded.sentences
    assert first.citations == [1] and not first.attached and first.supported
    assert second.citations == [] and "[7]" not in grounded.text


def test_an_empty_answer_has_no_sentences_and_grounding_zero(embedder) -> None:
    for answer in ("", "   \n "):
        grounded = ground(answer, [(1, "some chunk")], embedder)
        assert grounded.sentences == [] and grounded.grounding == 0.0 and grounded.text == ""
    assert ground("No sources at all.", [], embedder).grounding == 0.0

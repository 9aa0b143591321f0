"""Style evaluation: authorship attribution and Burrows' Delta on the sample authors' real text,
and the two-axis promotion gate's outcomes."""

from pathlib import Path

import pytest

from tests.test_datasets import import_twin
from training.artifacts import ArtifactStore
from training.dataset_versions import build_instruct_dataset, training_texts
from training.evaluation import Example, GatePolicy, ModelFigures, decide, generation_set, load_examples
from training.instructions import OfflineInstructionGenerator
from training.style import GENERIC_VOICE, AuthorshipClassifier, burrows_delta

AUTHORS = ("maya-lindqvist", "priya-raman")


@pytest.fixture
def two_authors(conn, tmp_path: Path) -> dict[str, object]:
    """Two sample authors imported and cleaned, a dataset version each; the held-out prose of each."""
    store = ArtifactStore(str(tmp_path / "artifacts"), tmp_path / "cache")
    held_out, folders = {}, {}
    for author in AUTHORS:
        import_twin(conn, author)
        version = build_instruct_dataset(conn, author, OfflineInstructionGenerator(), store, progress=False)
        folders[author] = version.local_dir
        held_out[author] = [e.reference for e in load_examples(version.local_dir) if e.category != "repository"]
    return {"held_out": held_out, "texts": training_texts(conn, folders[AUTHORS[0]], AUTHORS[0])}


def test_attribution_tells_two_sample_authors_apart_on_held_out_text(two_authors) -> None:
    texts, held_out = two_authors["texts"], two_authors["held_out"]
    assert set(texts) == set(AUTHORS)
    train = {text for author_texts in texts.values() for text in author_texts}
    assert not train & {text for author in AUTHORS for text in held_out[author]}  # nothing held out is trained on
    classifier = AuthorshipClassifier(texts)
    for author in AUTHORS:
        assert len(held_out[author]) >= 8
        assert classifier.share(held_out[author], author) >= 0.8  # chance is 0.5


def test_delta_is_smallest_to_the_same_author(two_authors) -> None:
    texts, held_out = two_authors["texts"], two_authors["held_out"]
    corpus = [text for author_texts in texts.values() for text in author_texts]
    for author in AUTHORS:
        other = next(a for a in AUTHORS if a != author)
        own = burrows_delta(" ".join(held_out[author]), " ".join(texts[author]), corpus)
        across = burrows_delta(" ".join(held_out[author]), " ".join(texts[other]), corpus)
        assert own is not None and across is not None and own < across


def test_empty_answers_are_nobodys_and_single_twin_attribution_works(two_authors) -> None:
    """One twin alone (author vs generic voice), and empty or whitespace answers."""
    texts = two_authors["texts"]
    generic = ["Sure! Here are some tips. First, make sure you understand the basics. Second, practice often.",
               "As an AI language model, I can help with that. There are many factors to consider here.",
               "Great question! In general, it depends on your situation and your goals.",
               "Here is a short overview of the topic, with the key points you should know."]
    classifier = AuthorshipClassifier({AUTHORS[0]: texts[AUTHORS[0]], GENERIC_VOICE: generic})
    assert classifier.labels == sorted([AUTHORS[0], GENERIC_VOICE])
    assert classifier.predict(["", "   \n"]) == [GENERIC_VOICE, GENERIC_VOICE]
    assert classifier.share(["", texts[AUTHORS[0]][0]], AUTHORS[0]) == 0.5
    assert burrows_delta("   ", texts[AUTHORS[0]][0], texts[AUTHORS[0]]) is None
    with pytest.raises(ValueError, match="two voices"):
        AuthorshipClassifier({AUTHORS[0]: texts[AUTHORS[0]], GENERIC_VOICE: ["   "]})


def _figures(label: str, perplexity: float, share: float | None) -> ModelFigures:
    return ModelFigures(label, f"/models/{label}", perplexity, attribution_share=share)


@pytest.mark.parametrize(
    ("challenger", "reference", "policy", "measurable", "promoted", "says"),
    [
        ((9.0, 0.50), (10.0, 0.25), GatePolicy(), True, True, "attribution 50% ≥ 25%"),
        ((11.0, 0.75), (10.0, 0.25), GatePolicy(), True, False, "perplexity 11.000 ≥ 10.000"),
        ((9.0, 0.125), (10.0, 0.25), GatePolicy(), True, False, "attribution 12% < 25%"),
        ((9.0, 0.125), (10.0, 0.25), GatePolicy(attribution_tolerance=0.2), True, True, "20% tolerance"),
        ((9.0, 0.0), (10.0, 0.25), GatePolicy(style=False), True, True, "style gate off by policy"),
        ((9.0, None), (10.0, None), GatePolicy(), False, True, "style not measurable (2 answers), gated on perplexity alone"),
    ],
    ids=["promote", "refuse-on-perplexity", "refuse-on-style", "within-tolerance", "style-off", "not-measurable"],
)
def test_the_gate_needs_perplexity_and_attribution(challenger, reference, policy, measurable, promoted, says) -> None:
    ok, reason = decide(_figures("challenger v2", *challenger), _figures("champion v1", *reference), policy,
                        measurable, "2 answers")
    assert ok is promoted
    assert says in reason and "champion v1" in reason


def test_generation_set_spreads_over_documents_and_skips_code() -> None:
    examples = [Example([{"role": "user", "content": f"q{d}-{i}"}], "text", d, "repository" if d == 3 else "article")
                for d in (1, 2, 3) for i in range(5)]
    chosen = generation_set(examples, 4)
    assert [e.instruction for e in chosen] == ["q1-0", "q2-0", "q1-1", "q2-1"]

"""Evaluation of a fine-tuned model on the dataset's held-out documents, and the promotion gate.

Each model (challenger, reference = champion or base, base) answers the same held-out prompts
once (greedy); every figure is computed from those answers:
- perplexity of the author's held-out answers given the prompt (assistant tokens only, chat
  template with the training system prompt);
- attribution share: the fraction of the model's answers that `training.style.AuthorshipClassifier`
  attributes to the author, the classifier trained on the training-split writing of every twin
  plus the base model's answers to training prompts (the "generic voice");
- Burrows' Delta from the model's answers to the author's held-out text (lower is closer);
- grounding: the share of answer sentences supported by the author's chunks that retrieval finds
  for the prompt (`twin.grounding`, the figure serving logs);
- answer length in words, and topical similarity (MiniLM cosine to the author's answer: it
  measures topic, not style, and is reported under that name, never gated on).
The gate (`GatePolicy`, `decide`): the challenger must beat the reference on perplexity and must
not lose on attribution share; when style cannot be measured (too few held-out documents or
answers) the gate falls back to perplexity and says so.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from training.style import GENERIC_VOICE, AuthorshipClassifier, StyleSettings, burrows_delta
from twin.embedding import Embedder
from twin.grounding import ground, trim_to_sentence

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class EvalSettings:
    max_examples: int = 24  # perplexity examples (cheap: one forward pass each)
    # Held-out prompts answered by each model: every held-out prose example a sample twin has
    # (13-16 from 3-4 documents), so one answer moves the attribution share by 6-8 points; on
    # 2 busy CPU cores 16 answers of 64 tokens take ~2 minutes per model (docs/training.md).
    generation_examples: int = 16
    max_new_tokens: int = 64
    max_length: int = 384
    batch_size: int = 8
    min_style_documents: int = 2  # held-out documents a style figure needs
    style: StyleSettings = StyleSettings()


@dataclass(frozen=True)
class GatePolicy:
    """Promotion policy: perplexity must improve; attribution share must not fall by more than
    `attribution_tolerance` (0: must not lose at all); `style` off gates on perplexity alone."""

    style: bool = True
    attribution_tolerance: float = 0.0


@dataclass(frozen=True)
class Example:
    prompt: Messages  # system + user, as in training
    reference: str  # the author's own passage
    document_id: int = 0
    category: str = "article"

    @property
    def instruction(self) -> str:
        return self.prompt[-1]["content"]


@dataclass
class ModelFigures:
    label: str
    path: str
    perplexity: float
    attribution_share: float | None = None
    delta: float | None = None
    topical_similarity: float | None = None
    grounding: float | None = None  # mean share of answer sentences supported by the author's chunks
    mean_answer_words: float | None = None
    empty_answers: int = 0
    answers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StyleCorpus:
    """What attribution is trained on: the training-split text of every twin, by twin."""

    author: str  # the twin being evaluated
    texts_by_author: dict[str, list[str]]
    generic_prompts: list[Messages]  # training prompts the base model answers as the generic voice


@dataclass
class EvalReport:
    challenger: ModelFigures
    reference: ModelFigures  # the champion, or the base model when there is none
    base: ModelFigures
    examples: int
    generation_examples: int
    held_out_documents: int
    reference_words: float
    style_measurable: bool
    style_note: str
    author_delta: float | None  # the author's own held-out text against their training text
    promoted: bool
    reason: str
    policy: dict[str, object] = field(default_factory=dict)
    prompts: list[str] = field(default_factory=list)  # the held-out instructions every model answered

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def models(self) -> list[ModelFigures]:
        return [self.challenger, self.reference] + ([self.base] if self.base is not self.reference else [])

    def markdown(self) -> str:
        lines = ["| model | perplexity ↓ | attributed to author ↑ | Delta to author ↓ | grounding ↑ | mean answer words | topical similarity |",
                 "|---|---:|---:|---:|---:|---:|---:|"]
        for figures in self.models():
            lines.append(f"| {figures.label} | {figures.perplexity:.3f} | {_share(figures.attribution_share)} | "
                         f"{_num(figures.delta)} | {_share(figures.grounding) if figures.grounding is not None else '–'} | "
                         f"{_num(figures.mean_answer_words, 0)} | {_num(figures.topical_similarity)} |")
        lines.append(f"| author's own held-out text | – | – | {_num(self.author_delta)} | – | {self.reference_words:.0f} | – |")
        verdict = "**promoted**" if self.promoted else "**not promoted**"
        return ("\n".join(lines) + f"\n\n{verdict}: {self.reason}\n\n{self.examples} held-out examples for perplexity; "
                f"{self.generation_examples} answers per model from {self.held_out_documents} held-out documents; {self.style_note}")


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _share(value: float | None) -> str:
    return "not measurable" if value is None else f"{value:.0%}"


def load_examples(dataset_dir: Path, limit: int | None = None, split: str = "test") -> list[Example]:
    rows = pq.read_table(dataset_dir / f"{split}.parquet", columns=["messages", "output", "document_id", "category"]).to_pylist()
    examples = [Example([{"role": m["role"], "content": m["content"]} for m in row["messages"][:-1]], row["output"],
                        row["document_id"], row["category"]) for row in rows]
    return examples if limit is None else examples[:limit]


def generation_set(examples: list[Example], limit: int) -> list[Example]:
    """Up to `limit` prose examples (code is not a voice), taken in turn from each document so a
    long held-out article does not fill the set alone; deterministic."""
    by_document: dict[int, list[Example]] = {}
    for example in examples:
        if example.category != "repository":
            by_document.setdefault(example.document_id, []).append(example)
    chosen: list[Example] = []
    queues = [by_document[key] for key in sorted(by_document)]
    while len(chosen) < limit and any(queues):
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    return chosen


def generic_prompts(train: list[Example], limit: int) -> list[Messages]:
    """A deterministic spread of training prompts for the base model's generic-voice answers."""
    prose = sorted((e for e in train if e.category != "repository"), key=lambda e: hashlib.sha256(e.instruction.encode()).hexdigest())
    return [e.prompt for e in prose[:limit]]


def decide(challenger: ModelFigures, reference: ModelFigures, policy: GatePolicy, style_measurable: bool,
           style_note: str) -> tuple[bool, str]:
    """The promotion decision and its reason, from the figures."""
    better = challenger.perplexity < reference.perplexity
    perplexity = (f"perplexity {challenger.perplexity:.3f} {'<' if better else '≥'} {reference.perplexity:.3f} "
                  f"of {reference.label}")
    if not better:
        return False, perplexity
    if not policy.style:
        return True, f"{perplexity} (style gate off by policy)"
    if not style_measurable or challenger.attribution_share is None or reference.attribution_share is None:
        return True, f"{perplexity}; style not measurable ({style_note}), gated on perplexity alone"
    floor = reference.attribution_share - policy.attribution_tolerance
    kept = challenger.attribution_share >= floor - 1e-9
    style = (f"attribution {challenger.attribution_share:.0%} {'≥' if kept else '<'} {reference.attribution_share:.0%} "
             f"of {reference.label}" + (f" - {policy.attribution_tolerance:.0%} tolerance" if policy.attribution_tolerance else ""))
    return kept, f"{perplexity}; {style}"


def evaluate(
    challenger: tuple[str, str],
    reference: tuple[str, str],
    base: tuple[str, str],
    examples: list[Example],
    corpus: StyleCorpus,
    embedder: Embedder,
    settings: EvalSettings = EvalSettings(),
    policy: GatePolicy = GatePolicy(),
    sources_for: Callable[[str], list[str]] | None = None,
) -> EvalReport:
    """Each model is (label, folder). `reference` may be the same folder as `base`.
    `sources_for(instruction)` returns the author's chunks retrieval finds (for grounding)."""
    generation = generation_set(examples, settings.generation_examples)
    perplexity_examples = examples[: settings.max_examples]
    figures: dict[str, ModelFigures] = {}
    generic: list[str] = []
    for label, path in dict.fromkeys([base, challenger, reference]):  # base first: its answers train the classifier
        model, tokenizer = load_model(path)
        figures[path] = ModelFigures(label, path, perplexity(model, tokenizer, perplexity_examples, settings))
        figures[path].answers = generate_answers(model, tokenizer, [e.prompt for e in generation], settings.max_new_tokens,
                                                 settings.batch_size)
        if path == base[1] and corpus.generic_prompts:
            generic = generate_answers(model, tokenizer, corpus.generic_prompts, settings.max_new_tokens, settings.batch_size)
        del model

    documents = len({e.document_id for e in generation})
    classifier, note = _style_classifier(corpus, generic, generation, documents, settings)
    sources = [sources_for(e.instruction) for e in generation] if sources_for else []
    held_out_text = " ".join(e.reference for e in generation)
    delta_corpus = [text for texts in corpus.texts_by_author.values() for text in texts]
    author_training = " ".join(corpus.texts_by_author.get(corpus.author, []))
    for model_figures in figures.values():
        answers = model_figures.answers
        model_figures.empty_answers = sum(1 for answer in answers if not answer.strip())
        if answers:
            model_figures.mean_answer_words = statistics.fmean(len(answer.split()) for answer in answers)
            model_figures.topical_similarity = topical_similarity(embedder, answers, [e.reference for e in generation])
            model_figures.delta = burrows_delta(" ".join(answers), held_out_text, delta_corpus, settings.style)
            if sources:
                model_figures.grounding = statistics.fmean(
                    ground(answer, list(enumerate(chunks, start=1)), embedder).grounding for answer, chunks in zip(answers, sources, strict=False))
        if classifier is not None:
            model_figures.attribution_share = classifier.share(answers, corpus.author)

    report_challenger, report_reference, report_base = figures[challenger[1]], figures[reference[1]], figures[base[1]]
    promoted, reason = decide(report_challenger, report_reference, policy, classifier is not None, note)
    return EvalReport(
        challenger=report_challenger, reference=report_reference, base=report_base, examples=len(perplexity_examples),
        generation_examples=len(generation), held_out_documents=documents,
        reference_words=statistics.fmean(len(e.reference.split()) for e in generation) if generation else 0.0,
        style_measurable=classifier is not None, style_note=note,
        author_delta=burrows_delta(held_out_text, author_training, delta_corpus, settings.style) if generation else None,
        promoted=promoted, reason=reason, policy=asdict(policy), prompts=[e.instruction for e in generation],
    )


def _style_classifier(corpus: StyleCorpus, generic: list[str], generation: list[Example], documents: int,
                      settings: EvalSettings) -> tuple[AuthorshipClassifier | None, str]:
    """The attribution classifier, or None and why style is not measurable here."""
    if documents < settings.min_style_documents or len(generation) < settings.style.min_answers:
        return None, (f"{len(generation)} held-out prose answers from {documents} documents; a style figure needs "
                      f"{settings.style.min_answers} from {settings.min_style_documents}")
    if len(corpus.texts_by_author.get(corpus.author, [])) < settings.style.min_texts_per_class:
        return None, "too little training text of the author for attribution"
    voices = {**corpus.texts_by_author, GENERIC_VOICE: [answer for answer in generic if answer.strip()]}
    try:
        classifier = AuthorshipClassifier(voices, settings.style)
    except ValueError as error:
        return None, str(error)
    others = [label for label in classifier.labels if label not in {corpus.author, GENERIC_VOICE}]
    return classifier, (f"attribution among {corpus.author}, {len(others)} other twin(s) and the generic voice "
                        f"({len(voices[GENERIC_VOICE])} base-model answers to training prompts)")


def load_model(path: str):  # -> (model, tokenizer)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    return model, tokenizer


def perplexity(model, tokenizer, examples: list[Example], settings: EvalSettings) -> float:
    """exp(mean negative log-likelihood of the author's answer tokens given the prompt)."""
    import torch

    total_loss, total_tokens = 0.0, 0
    for start in range(0, len(examples), settings.batch_size):
        batch = examples[start : start + settings.batch_size]
        sequences, labels = [], []
        for example in batch:
            prompt = tokenizer.apply_chat_template(example.prompt, add_generation_prompt=True, tokenize=True)
            full = tokenizer.apply_chat_template([*example.prompt, {"role": "assistant", "content": example.reference}], tokenize=True)
            prompt, full = _ids(prompt), _ids(full)
            full = full[: settings.max_length]
            sequences.append(full)
            labels.append([-100] * min(len(prompt), len(full)) + full[len(prompt):])
        width = max(len(s) for s in sequences)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in sequences])
        attention = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences])
        target = torch.tensor([label + [-100] * (width - len(label)) for label in labels])
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
        shifted = target[:, 1:]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), shifted.reshape(-1), ignore_index=-100, reduction="sum")
        total_loss += float(loss)
        total_tokens += int((shifted != -100).sum())
    return math.exp(total_loss / max(total_tokens, 1))


def _ids(encoded) -> list[int]:
    """apply_chat_template returns a list, or a BatchEncoding/dict with input_ids (transformers 5)."""
    if isinstance(encoded, dict) or hasattr(encoded, "keys"):
        encoded = encoded["input_ids"]
    return list(encoded)


def generate_answers(model, tokenizer, prompts: list[Messages], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy answers to chat prompts, batched with left padding."""
    import torch

    tokenizer.padding_side = "left"
    answers: list[str] = []
    for start in range(0, len(prompts), batch_size):
        texts = [tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                 for messages in prompts[start : start + batch_size]]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            output = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        generated = output[:, encoded["input_ids"].shape[1]:]
        for ids, text in zip(generated.tolist(), tokenizer.batch_decode(generated, skip_special_tokens=True), strict=False):
            # no end-of-text token: cut off at max_new_tokens, so end it at a sentence as serving does
            answers.append(text.strip() if tokenizer.eos_token_id in ids else trim_to_sentence(text))
    return [answer.strip() for answer in answers]


def topical_similarity(embedder: Embedder, generated: list[str], references: list[str]) -> float:
    """Mean cosine between each generated answer and the author's (unit vectors): topic, not style."""
    vectors = embedder.encode(generated + references)
    return float((vectors[: len(generated)] * vectors[len(generated):]).sum(axis=1).mean())

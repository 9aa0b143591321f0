"""Evaluation of a fine-tuned model on the dataset's held-out documents, and the promotion gate.

Figures, all on the same held-out examples:
- perplexity of the author's answer given the instruction (assistant tokens only, chat template),
  for the challenger, the base model and the current champion;
- style similarity: cosine between the embedding of a generated answer and of the author's answer;
- answer length (words) of the generated answers against the author's.
The gate: the challenger is promoted only when its perplexity is lower than the reference's, the
reference being the current champion or, when there is none, the base model.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from twin.embedding import Embedder


@dataclass(frozen=True)
class EvalSettings:
    max_examples: int = 24  # perplexity examples (cheap: one forward pass each)
    generation_examples: int = 4  # style examples (generation is the slow part on CPU)
    max_new_tokens: int = 48
    max_length: int = 384
    batch_size: int = 8


@dataclass(frozen=True)
class Example:
    instruction: str
    reference: str


@dataclass
class ModelFigures:
    label: str
    path: str
    perplexity: float
    style_similarity: float | None = None
    mean_answer_words: float | None = None
    answers: list[str] = field(default_factory=list)


@dataclass
class EvalReport:
    challenger: ModelFigures
    reference: ModelFigures  # the champion, or the base model when there is none
    base: ModelFigures
    examples: int
    reference_words: float
    promoted: bool
    reason: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def markdown(self) -> str:
        rows = [self.challenger, self.reference] + ([self.base] if self.base is not self.reference else [])
        lines = ["| model | perplexity ↓ | style similarity ↑ | mean answer words |", "|---|---:|---:|---:|"]
        for figures in rows:
            style = f"{figures.style_similarity:.3f}" if figures.style_similarity is not None else "–"
            words = f"{figures.mean_answer_words:.0f}" if figures.mean_answer_words is not None else "–"
            lines.append(f"| {figures.label} | {figures.perplexity:.3f} | {style} | {words} |")
        lines.append(f"| author's own answers | – | 1.000 | {self.reference_words:.0f} |")
        verdict = "**promoted**" if self.promoted else "**not promoted**"
        return "\n".join(lines) + f"\n\n{verdict}: {self.reason} ({self.examples} held-out examples)"


def load_examples(dataset_dir: Path, limit: int) -> list[Example]:
    rows = pq.read_table(dataset_dir / "test.parquet", columns=["instruction", "output"]).to_pylist()
    return [Example(row["instruction"], row["output"]) for row in rows[:limit]]


def evaluate(
    challenger: tuple[str, str],
    reference: tuple[str, str],
    base: tuple[str, str],
    examples: list[Example],
    embedder: Embedder,
    settings: EvalSettings = EvalSettings(),
) -> EvalReport:
    """Each model is (label, folder). `reference` may be the same folder as `base`."""
    generation = examples[: settings.generation_examples]
    figures: dict[str, ModelFigures] = {}
    for label, path in dict.fromkeys([challenger, reference, base]):
        figures[path] = _figures(label, path, examples, generation, embedder, settings)
    report_challenger, report_reference, report_base = figures[challenger[1]], figures[reference[1]], figures[base[1]]
    promoted = report_challenger.perplexity < report_reference.perplexity
    comparison = "<" if promoted else "≥"
    reason = (f"perplexity {report_challenger.perplexity:.3f} {comparison} {report_reference.perplexity:.3f} "
              f"of {report_reference.label}")
    return EvalReport(
        challenger=report_challenger, reference=report_reference, base=report_base, examples=len(examples),
        reference_words=statistics.fmean(len(e.reference.split()) for e in generation) if generation else 0.0,
        promoted=promoted, reason=reason,
    )


def _figures(label: str, path: str, examples: list[Example], generation: list[Example], embedder: Embedder,
             settings: EvalSettings) -> ModelFigures:
    model, tokenizer = load_model(path)
    figures = ModelFigures(label, path, perplexity(model, tokenizer, examples, settings))
    if generation:
        answers = generate_answers(model, tokenizer, [e.instruction for e in generation], settings.max_new_tokens, settings.batch_size)
        figures.answers = answers
        figures.style_similarity = style_similarity(embedder, answers, [e.reference for e in generation])
        figures.mean_answer_words = statistics.fmean(len(a.split()) for a in answers)
    return figures


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
    """exp(mean negative log-likelihood of the author's answer tokens given the instruction)."""
    import torch

    total_loss, total_tokens = 0.0, 0
    for start in range(0, len(examples), settings.batch_size):
        batch = examples[start : start + settings.batch_size]
        sequences, labels = [], []
        for example in batch:
            prompt = tokenizer.apply_chat_template([{"role": "user", "content": example.instruction}], add_generation_prompt=True, tokenize=True)
            full = tokenizer.apply_chat_template(
                [{"role": "user", "content": example.instruction}, {"role": "assistant", "content": example.reference}], tokenize=True)
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


def generate_answers(model, tokenizer, instructions: list[str], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy answers, batched with left padding."""
    import torch

    tokenizer.padding_side = "left"
    answers: list[str] = []
    for start in range(0, len(instructions), batch_size):
        prompts = [tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False)
                   for text in instructions[start : start + batch_size]]
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            output = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        answers += tokenizer.batch_decode(output[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
    return [answer.strip() for answer in answers]


def style_similarity(embedder: Embedder, generated: list[str], references: list[str]) -> float:
    """Mean cosine between each generated answer and the author's (the embedder returns unit vectors)."""
    vectors = embedder.encode(generated + references)
    return float((vectors[: len(generated)] * vectors[len(generated):]).sum(axis=1).mean())

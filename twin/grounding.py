"""Grounded answers: end at a sentence boundary, and cite each sentence's source inline as [n].

The model is asked to write [n] itself; where a sentence has none, `ground` attaches the source
whose chunk is most similar to the sentence (cosine of the embedding model's unit vectors),
only when that similarity reaches `CITATION_THRESHOLD`. A sentence is *supported* when one of its
cited chunks reaches the threshold; `grounding` is the share of supported sentences. No citation
is ever invented below the threshold, and one the model wrote to a source that does not exist is
removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from twin.embedding import Embedder

# all-MiniLM-L6-v2 cosine between one sentence and a two-paragraph chunk, measured on the sample
# articles (docs/serving.md, "Citations"): a sentence of the chunk itself scores 0.39 / 0.50 / 0.61
# (quartiles), one from another part of the same article 0.20 / 0.28 / 0.39, one from another
# article 0.01 / 0.04 / 0.10. At 0.4 three in four of the chunk's own sentences are cited, one in
# four of its article's other sentences and one in twenty unrelated ones.
CITATION_THRESHOLD = 0.4

_CITATION = re.compile(r"\s*\[(\d{1,2})\]")
_SENTENCE_END = re.compile(r"""(?:[.!?…]["'”’)\]]*(?:\s*\[\d{1,2}\])*|```)$""")
_BOUNDARY = re.compile(r"""(?<=[.!?…])["'”’)]*(?:\s*\[\d{1,2}\])*(?=\s)""")


def trim_to_sentence(text: str) -> str:
    """A text cut off at max_tokens, up to its last complete sentence; with no complete sentence,
    up to its last whole word followed by "…" ("" when a single, perhaps partial, word is all)."""
    text = text.rstrip()
    if not text or _SENTENCE_END.search(text):
        return text
    ends = [match.end() for match in _BOUNDARY.finditer(text)]
    if ends:
        return text[: ends[-1]].rstrip()
    if len(text.split()) <= 1:
        return ""
    return text.rsplit(None, 1)[0].rstrip(" ,;:-") + "…"


def split_sentences(text: str) -> list[str]:
    """Sentences, each keeping the [n] citations written right after it."""
    sentences, start = [], 0
    for match in _BOUNDARY.finditer(text):
        sentences.append(text[start : match.end()].strip())
        start = match.end()
    sentences.append(text[start:].strip())
    return [sentence for sentence in sentences if sentence]


@dataclass(frozen=True)
class CitedSentence:
    text: str  # with its inline [n]
    citations: list[int]  # source numbers, 1-based
    similarity: float  # best cosine to a cited chunk (0 when none is cited)
    supported: bool
    attached: bool  # the citation was attached here, not written by the model


@dataclass
class GroundedAnswer:
    text: str  # the answer with inline [n] on every supported sentence
    sentences: list[CitedSentence] = field(default_factory=list)

    @property
    def grounding(self) -> float:
        """Share of the answer's sentences supported by a cited chunk (0 for an empty answer)."""
        if not self.sentences:
            return 0.0
        return sum(1 for sentence in self.sentences if sentence.supported) / len(self.sentences)

    def as_json(self) -> dict[str, object]:
        return {"grounding": round(self.grounding, 4), "threshold": CITATION_THRESHOLD,
                "sentences": [{"text": s.text, "citations": s.citations, "similarity": round(s.similarity, 4),
                               "supported": s.supported, "attached": s.attached} for s in self.sentences]}


def ground(answer: str, sources: list[tuple[int, str]], embedder: Embedder, threshold: float = CITATION_THRESHOLD) -> GroundedAnswer:
    """Cite each sentence of `answer` against numbered chunks: (source number, chunk text); a
    source with several chunks counts its most similar one."""
    sentences = split_sentences(answer)
    if not sentences:
        return GroundedAnswer("")
    plain = [_CITATION.sub("", sentence).strip() for sentence in sentences]
    numbers = sorted({number for number, _ in sources})
    scores = np.zeros((len(sentences), len(numbers)))
    if sources:
        similarity = embedder.encode(plain) @ embedder.encode([text for _, text in sources]).T  # sentences x chunks
        for column, number in enumerate(numbers):
            chunks = [index for index, (n, _) in enumerate(sources) if n == number]
            scores[:, column] = similarity[:, chunks].max(axis=1)
    cited: list[CitedSentence] = []
    for row, (sentence, text) in enumerate(zip(sentences, plain, strict=False)):
        by_number = dict(zip(numbers, scores[row].tolist(), strict=False))
        written = [n for n in dict.fromkeys(int(m) for m in _CITATION.findall(sentence)) if n in by_number]
        if written:
            best, citations, attached = max(by_number[n] for n in written), written, False
        elif by_number and max(by_number.values()) >= threshold:
            number = max(by_number, key=by_number.__getitem__)
            best, citations, attached = by_number[number], [number], True
        else:
            best, citations, attached = 0.0, [], False
        cited.append(CitedSentence(_with_citations(text, citations), citations, best,
                                   bool(citations) and best >= threshold, attached))
    return GroundedAnswer(" ".join(sentence.text for sentence in cited), cited)


def _with_citations(sentence: str, citations: list[int]) -> str:
    """The [n] marks after the sentence's final punctuation ("...the table. [1]" reads as
    "...the table [1]."), so a sentence ends the same way with and without citations."""
    if not citations:
        return sentence
    marks = "".join(f"[{n}]" for n in citations)
    match = re.search(r"""([.!?…]["'”’)]*)$""", sentence)
    if match:
        return f"{sentence[: match.start()].rstrip()} {marks}{match.group(1)}"
    return f"{sentence} {marks}"

"""Does a text read like its author? Two offline measures, no model download, no Dagster.

- `AuthorshipClassifier`: character 2-4-grams (TF-IDF) plus function-word frequencies, a linear
  classifier trained on the training-split writing of every twin plus a "generic voice" class (the
  base model's own answers). `share(texts, author)` is the fraction of texts attributed to the author.
- `burrows_delta`: Burrows' Delta over the most frequent words: the mean absolute difference of
  z-scored word frequencies between two texts, the z-scores taken over the training texts (lower
  is closer; 0 is identical usage).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

GENERIC_VOICE = "(generic voice)"  # the class of the base model's own answers

# Function words (articles, pronouns, prepositions, conjunctions, auxiliaries, common adverbs):
# how often a writer uses them is a habit, largely independent of the topic.
FUNCTION_WORDS = tuple("""
a about above after again against all also although am an and another any are around as at be
because been before being below between both but by can could did do does doing down during each
either enough even ever every few for from further had has have having he her here hers herself
him himself his how however i if in into is it its itself just least less like many may me might
more most much must my myself neither never no nor not now of off often on once only or other our
ours ourselves out over own perhaps quite rather really same she should since so some still such
than that the their theirs them themselves then there these they this those though through thus
to too under until up upon us very was we were what when where whether which while who whom whose
why will with within without would yet you your yours yourself yourselves
""".split())

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class StyleSettings:
    min_texts_per_class: int = 3  # training texts each author (and the generic voice) needs
    min_answers: int = 8  # held-out answers below which an attribution share is not a measurement
    delta_words: int = 150  # most frequent words Burrows' Delta compares
    ngram_range: tuple[int, int] = (2, 4)


class AuthorshipClassifier:
    """Which of the known voices wrote a text. Trained once, from (label -> texts)."""

    def __init__(self, texts_by_label: dict[str, list[str]], settings: StyleSettings = StyleSettings()) -> None:
        from scipy.sparse import hstack
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        usable = {label: [t for t in texts if t.strip()] for label, texts in texts_by_label.items()}
        self.labels = sorted(label for label, texts in usable.items() if len(texts) >= settings.min_texts_per_class)
        if len(self.labels) < 2:
            raise ValueError(f"attribution needs two voices with {settings.min_texts_per_class}+ texts each, "
                             f"got {({label: len(texts) for label, texts in usable.items()})}")
        texts = [text for label in self.labels for text in usable[label]]
        targets = [label for label in self.labels for _ in usable[label]]
        self._chars = TfidfVectorizer(analyzer="char_wb", ngram_range=settings.ngram_range, sublinear_tf=True,
                                      min_df=2, max_features=50_000)
        self._function = TfidfVectorizer(vocabulary=FUNCTION_WORDS, token_pattern=r"(?u)\b[a-z]+\b", use_idf=False,
                                         norm="l2", sublinear_tf=True)
        self._stack = hstack
        features = hstack([self._chars.fit_transform(texts), self._function.fit_transform(texts)]).tocsr()
        # balanced weights: a prolific author must not win every doubtful text
        self._model = LogisticRegression(max_iter=2000, C=10.0, class_weight="balanced")
        self._model.fit(features, targets)

    def _features(self, texts: list[str]):
        return self._stack([self._chars.transform(texts), self._function.transform(texts)]).tocsr()

    def predict(self, texts: list[str]) -> list[str]:
        """The voice of each text; an empty or whitespace text is nobody's (GENERIC_VOICE)."""
        present = [i for i, text in enumerate(texts) if text.strip()]
        labels = [GENERIC_VOICE] * len(texts)
        if present:
            for index, label in zip(present, self._model.predict(self._features([texts[i] for i in present])), strict=False):
                labels[index] = str(label)
        return labels

    def share(self, texts: list[str], label: str) -> float:
        """Fraction of `texts` attributed to `label` (empty texts count, as not the author's)."""
        if not texts:
            return 0.0
        return sum(1 for predicted in self.predict(texts) if predicted == label) / len(texts)


def burrows_delta(text: str, target: str, corpus: list[str], settings: StyleSettings = StyleSettings()) -> float | None:
    """Burrows' Delta between `text` and `target` over the corpus's most frequent words; None when
    either side has no words."""
    text_words, target_words = words(text), words(target)
    if not text_words or not target_words:
        return None
    totals: Counter[str] = Counter()
    profiles = []
    for document in corpus:
        counts = Counter(words(document))
        totals.update(counts)
        profiles.append(counts)
    vocabulary = [word for word, _ in totals.most_common(settings.delta_words)]
    if not vocabulary:
        return None
    matrix = np.array([_frequencies(counts, vocabulary) for counts in profiles if sum(counts.values())])
    mean, std = matrix.mean(axis=0), matrix.std(axis=0)
    std[std == 0] = 1.0
    z_text = (_frequencies(Counter(text_words), vocabulary) - mean) / std
    z_target = (_frequencies(Counter(target_words), vocabulary) - mean) / std
    return float(np.abs(z_text - z_target).mean())


def _frequencies(counts: Counter[str], vocabulary: list[str]) -> np.ndarray:
    total = sum(counts.values()) or 1
    return np.array([counts[word] / total for word in vocabulary])

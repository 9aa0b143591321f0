"""Writing one benchmark's section into docs/benchmarks.md without touching the others."""

from __future__ import annotations

import re
from pathlib import Path

HEADER = "# Benchmarks\n\nFigures written by the scripts in `bench/`; each names the machine it ran on.\n"


def replace_section(path: Path, heading_prefix: str, section: str) -> None:
    """Replace the `## {heading_prefix}...` section (up to the next `## `) or append it."""
    existing = path.read_text(encoding="utf-8") if path.exists() else HEADER
    pattern = re.compile(rf"^## {re.escape(heading_prefix)}.*?(?=^## |\Z)", re.M | re.S)
    body = section.rstrip() + "\n\n"
    updated = pattern.sub(lambda _: body, existing, count=1) if pattern.search(existing) else existing.rstrip() + "\n\n" + body
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(updated.rstrip() + "\n", encoding="utf-8")

"""Asset checks in plain Python: the domain declares each check once and evaluates it.

A `CheckSpec` names a check and says what it guards; `CheckSpec.result` makes the `Check` that
an evaluation returns, so a result's name is always a declared one. assets/checks.py turns both
into Dagster's types in one place; nothing here imports Dagster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Check:
    """One check's outcome for one partition: `details` are numbers and short strings for the UI."""

    name: str
    passed: bool
    details: Mapping[str, object] = field(default_factory=dict)
    summary: str | None = None  # one line saying why it failed (or passed), when there is one


@dataclass(frozen=True)
class CheckSpec:
    """A check's name and what it guards (the description the UI shows)."""

    name: str
    description: str

    def result(self, passed: bool, details: Mapping[str, object] | None = None,
               summary: str | None = None) -> Check:
        return Check(self.name, passed, dict(details or {}), summary)

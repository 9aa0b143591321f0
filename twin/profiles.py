"""Twin profiles: a YAML file naming each twin and where their writing comes from.

```yaml
twins:
  - name: Maya Lindqvist
    sources:
      - jsonl: sample_corpus/maya-lindqvist.jsonl    # a file or folder, relative to this file
      - crawl: https://mayalindqvist.substack.com/feed
      - git: https://github.com/mayalindqvist/tidewater
      - export: exports/linkedin.zip                  # LinkedIn, Medium or Substack export
        base_url: https://mayalindqvist.substack.com  # optional, Substack post urls
      - s3: s3://bucket/maya/
      - mongodb: twin                                 # database name; URI from $MONGODB_URI
        uri_env: MONGODB_URI
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from twin.documents import twin_slug
from twin.errors import TwinError
from twin.sources.kinds import SOURCE_KINDS


@dataclass(frozen=True)
class SourceSpec:
    """One source of a twin: its kind, where it is, and options such as `base_url`."""

    kind: str
    location: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.location}"


@dataclass(frozen=True)
class TwinProfile:
    name: str
    sources: tuple[SourceSpec, ...]

    @property
    def slug(self) -> str:
        return twin_slug(self.name)


def load_profiles(path: Path) -> list[TwinProfile]:
    """Profiles from `path`; an absent file means no profiles. Errors name the file and entry."""
    if not path.exists():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise TwinError(f"{path} is not valid YAML: {exc}", "fix the syntax (see docs/sources.md).") from exc
    entries = data.get("twins") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise TwinError(f"{path} has no `twins:` list.", "start the file with `twins:` (see docs/sources.md).")
    profiles: list[TwinProfile] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries, start=1):
        where = f"{path} twin #{index}"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise TwinError(f"{where} has no name.", "give each twin `name: Full Name`.")
        profile = TwinProfile(
            name=entry["name"].strip(),
            sources=tuple(_source(path, where, raw) for raw in entry.get("sources") or []),
        )
        if profile.slug in seen:
            raise TwinError(f"{where}: twin {profile.name!r} appears twice.", "merge the two entries.")
        seen.add(profile.slug)
        profiles.append(profile)
    return profiles


def _source(path: Path, where: str, raw: object) -> SourceSpec:
    if not isinstance(raw, dict):
        raise TwinError(f"{where}: source {raw!r} is not a mapping.", "write e.g. `- jsonl: file.jsonl`.")
    kinds = [kind for kind in SOURCE_KINDS if kind in raw]
    if len(kinds) != 1:
        raise TwinError(f"{where}: source {raw} must name exactly one of {', '.join(SOURCE_KINDS)}.",
                        "split it into one entry per source.")
    kind = kinds[0]
    location = str(raw[kind]).strip()
    if SOURCE_KINDS[kind].local:  # a path, relative to this file
        location = str((path.parent / location).resolve())
    options = {key: str(value) for key, value in raw.items() if key != kind}
    return SourceSpec(kind=kind, location=location, options=options)

"""The twin profiles file (twins.yaml): who the twins are and where their writing comes from."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from twin.profiles import TwinProfile, load_profiles
from twin.settings import DEFAULT_MAX_DOCUMENT_BYTES


class ProfilesResource(dg.ConfigurableResource):
    """Reads the YAML file at `path` on each use, so edits apply without a restart."""

    path: str
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES  # what every source may deliver per document

    def profiles(self) -> list[TwinProfile]:
        return load_profiles(Path(self.path))

    def get(self, slug: str) -> TwinProfile | None:
        return next((profile for profile in self.profiles() if profile.slug == slug), None)

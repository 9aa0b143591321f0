"""The artifact store for dataset versions: a folder under TWIN_HOME by default, or S3 when
`TWIN_ARTIFACTS_URI=s3://bucket/prefix` (the client comes from dagster-aws' S3Resource).

Files are always written locally first (training reads them from disk); with S3 configured the
folder is then uploaded, and a folder missing locally is downloaded from S3 on demand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from twin.errors import TwinError


class ArtifactStore:
    def __init__(self, uri: str, cache_dir: Path, s3_client: Any | None = None) -> None:
        self.uri = uri.rstrip("/")
        self._s3 = s3_client
        parts = urlsplit(self.uri)
        if parts.scheme == "s3":
            if s3_client is None:
                raise TwinError(
                    f"TWIN_ARTIFACTS_URI is {uri}, but no S3 client was given.",
                    "Run through Dagster (its `s3` resource supplies one) or unset TWIN_ARTIFACTS_URI.",
                )
            self._bucket, self._prefix = parts.netloc, parts.path.strip("/")
            self.root = cache_dir
        elif parts.scheme in ("", "file"):
            self._bucket = self._prefix = ""
            self.root = Path(parts.path if parts.scheme else self.uri)
        else:
            raise TwinError(
                f"TWIN_ARTIFACTS_URI has the scheme {parts.scheme!r}, which the platform cannot store to.",
                "Use a local folder or s3://bucket/prefix.",
            )

    @property
    def is_remote(self) -> bool:
        return bool(self._bucket)

    def local_dir(self, relative: str) -> Path:
        return self.root / relative

    def uri_for(self, relative: str) -> str:
        if self.is_remote:
            return f"s3://{self._bucket}/{self._prefix}/{relative}".replace("//", "/").replace("s3:/", "s3://")
        return str(self.local_dir(relative))

    def publish(self, relative: str) -> str:
        """Upload a finished local folder (remote stores only); returns its URI."""
        if self.is_remote:
            for path in sorted(self.local_dir(relative).rglob("*")):
                if path.is_file():
                    key = "/".join(filter(None, [self._prefix, relative, path.relative_to(self.local_dir(relative)).as_posix()]))
                    self._s3.upload_file(str(path), self._bucket, key)
        return self.uri_for(relative)

    def fetch(self, relative: str) -> Path:
        """The local folder for a stored artifact, downloaded first when only S3 has it."""
        folder = self.local_dir(relative)
        if folder.is_dir() and (folder / "manifest.json").is_file():
            return folder
        if not self.is_remote:
            raise TwinError(f"The artifact {relative} is not in {self.root}.", "Materialize the dataset again.")
        prefix = "/".join(filter(None, [self._prefix, relative])) + "/"
        paginator = self._s3.get_paginator("list_objects_v2")
        found = False
        for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                target = folder / item["Key"][len(prefix):]
                target.parent.mkdir(parents=True, exist_ok=True)
                self._s3.download_file(self._bucket, item["Key"], str(target))
                found = True
        if not found:
            raise TwinError(f"The artifact {self.uri_for(relative)} does not exist.", "Materialize the dataset again.")
        return folder

"""Where uploaded photos and sign crops live; messages carry only their keys.

A directory on a shared volume (a PVC in Kubernetes, a named volume in compose).
Writes go to a temporary name and are renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_KEY = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-.]+)*$")


class BlobNotFound(KeyError):
    pass


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not _KEY.match(key) or ".." in key:
            raise ValueError(f"invalid blob key {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def path(self, key: str) -> Path:
        """Where a blob lies, for a reader that wants a file (the video decoder): no copy of a
        large video per task that reads it."""
        path = self._path(key)
        if not path.is_file():
            raise BlobNotFound(key)
        return path

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def delete_tree(self, key: str) -> None:
        """A folder of blobs and all it holds (a job's crops)."""
        shutil.rmtree(self._path(key), ignore_errors=True)

    def older_than(self, prefix: str, timestamp: float) -> Iterator[str]:
        """Keys under `prefix` last written before `timestamp` (unix seconds)."""
        base = self._path(prefix)
        for path in base.rglob("*") if base.is_dir() else ():
            if path.is_file() and not path.name.startswith(".tmp-") and path.stat().st_mtime < timestamp:
                yield path.relative_to(self.root).as_posix()

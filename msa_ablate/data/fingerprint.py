"""What a run's data is, for its identity: a file's size and SHA-256, or a generator's name and
version (its parameters are in the run's config).

A file is hashed once: the digest is cached by path, size, modification time, inode and the
inode's change time (which no copy can set, though ``cp -p``, ``rsync -t`` and tar keep the size
and modification time), in this process and in ``$XDG_CACHE_HOME/msa_ablate/fingerprints.json``
(default ``~/.cache``), so the jobs of a sweep, in one process or many, read a 300 MB file once.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from msa_ablate.errors import DataError
from msa_ablate.files import write_atomic

_digests: dict[str, str] = {}


def cache_file() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "msa_ablate" / "fingerprints.json"


def data_file(path: str) -> Path:
    """The regular, non-empty file at ``path``, or a DataError saying what is there instead."""
    file = Path(path).expanduser()
    if not file.exists():
        raise DataError(f"{file}: no such data file (set data.path)")
    if file.is_dir():
        raise DataError(f"{file}: a folder, not a data file (set data.path to a pickle in it)")
    if not file.is_file():
        raise DataError(f"{file}: not a regular file (a device, a pipe or a socket), so not a data file")
    if file.stat().st_size == 0:
        raise DataError(f"{file}: an empty file, not a data file")
    return file


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_fingerprint(path: str) -> dict:
    file = data_file(path).resolve()
    stat = file.stat()
    key = f"{file}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}|{stat.st_ctime_ns}"
    if key not in _digests:
        cache = cache_file()
        try:
            _digests.update(json.loads(cache.read_text()))
        except (OSError, ValueError):
            pass
        if key not in _digests:
            _digests[key] = _sha256(file)
            try:  # a cache that cannot be written costs a re-read, not the run
                cache.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(cache, lambda f: f.write(json.dumps(_digests).encode()))
            except OSError:
                pass
    return {"file": str(file), "bytes": stat.st_size, "sha256": _digests[key]}


def fingerprint(data: Mapping) -> dict:
    """``data``: the run's data config (``_target_`` and its arguments). A file (``path``) by its
    content; a generator by its name and the ``VERSION`` its module declares."""
    if "path" in data:
        return file_fingerprint(data["path"])
    module, _, name = data["_target_"].rpartition(".")
    return {"generator": data["_target_"], "version": getattr(importlib.import_module(module), "VERSION", None)}

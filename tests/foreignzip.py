"""Zips as other tools write them, for the tests of what extraction and smoke make of zips we did not write."""

from __future__ import annotations

import zipfile
from pathlib import Path


def foreign_zip(path: Path, entries: list[tuple[str, bytes, int]]) -> Path:
    """A zip with names, bytes and unix modes exactly as given (symlinks, setuid bits, directories, clashes)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return path

"""Deterministic zips of functions and of the bootstrap layer, and Lambda's size limits.

The same binary must give the same zip, byte for byte, on every run: the zip's sha256 is how deploy decides
"unchanged" (Lambda reports it as CodeSha256), so everything in the zip's own layout that varies with the
clock, the umask or the OS (timestamps, modes, owner fields, entry order, compression level) is fixed here.
The compressed bytes themselves come from the zlib that Python links: deflate's output is not specified byte
for byte, and a different zlib (zlib-ng, a vendor-tuned build, another major version) may compress the same
input differently. So zips are byte-identical where the zlib is the same (one image, one Debian release); a
zip made with another zlib unpacks to the same files but may have another sha256, and deploy then sees a code
change once.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import stat
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

from go_arm_lambda.errors import PackageError
from go_arm_lambda.limits import MAX_UNZIPPED, MAX_ZIP_IN_REQUEST, check_handler

# The earliest time a zip can hold: any fixed value works, and this one plainly is not a real build time.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
# Everything we zip is a program Lambda executes: a regular file, rwxr-xr-x, in the high 16 bits where Unix
# unzip (and Lambda) read it; create_system 3 says "Unix" so they trust it. Without this a zip made on
# Windows loses the exec bit and the function fails with `permission denied`.
EXEC_ATTR = (stat.S_IFREG | 0o755) << 16
UNIX = 3
# Level 4 gives zips within 3% of level 6's size in under half the time (5.8 MB Go binary: 0.12 s vs 0.29 s),
# and zipping sits inside the build's time budget. Fixed, so the bytes do not depend on a default.
COMPRESS_LEVEL = 4

_SOURCE_BOOTSTRAP = Path(__file__).resolve().parents[2] / "layer" / "bootstrap"


@dataclass(frozen=True)
class Artifact:
    path: Path
    sha256: str  # hex digest of the zip file
    size: int  # zip size in bytes
    unzipped_size: int

    @property
    def code_sha256(self) -> str:
        """base64 of the raw digest: what Lambda reports as CodeSha256, to compare with without a download."""
        return base64.b64encode(bytes.fromhex(self.sha256)).decode()


def package_function(binary: Path, handler: str, out_zip: Path) -> Artifact:
    """The function zip: `binary` at the root under the name `handler` (what the bootstrap will exec)."""
    return write_zip(out_zip, {handler: _read_regular_file(binary)})


def package_layer(out_zip: Path) -> Artifact:
    """The layer zip: `bootstrap` at the root, which Lambda extracts to /opt/bootstrap."""
    return write_zip(out_zip, {"bootstrap": bootstrap_script()})


def bootstrap_script() -> bytes:
    """The installed wheel's copy (pyproject force-includes it), else the source tree's layer/bootstrap."""
    wheel_copy = resources.files("go_arm_lambda") / "layer" / "bootstrap"
    if wheel_copy.is_file():
        return wheel_copy.read_bytes()
    if _SOURCE_BOOTSTRAP.is_file():
        return _SOURCE_BOOTSTRAP.read_bytes()
    raise PackageError("the bootstrap script is missing from this installation of go-arm-lambda",
                       "reinstall go-arm-lambda (pip install --force-reinstall go-arm-lambda)")


class Sized(Protocol):
    """What the size rules need of a zip; the planner passes zips it did not make itself."""

    @property
    def size(self) -> int: ...
    @property
    def unzipped_size(self) -> int: ...


def check_limits(function: Sized, layer: Sized | None, name: str) -> bool:
    """Raises when Lambda would refuse the function; returns True when its zip must go through S3.

    Only the unzipped total is fatal: a zip over the request limit still deploys, just not inline.
    """
    unzipped = function.unzipped_size + (layer.unzipped_size if layer else 0)
    if unzipped > MAX_UNZIPPED:
        with_layer = " with the bootstrap layer" if layer else ""
        raise PackageError(
            f"function {name} is {unzipped:,} bytes unzipped{with_layer}, over Lambda's limit of "
            f"{MAX_UNZIPPED:,} bytes (250 MB) for a function and its layers",
            "make the binary smaller (-ldflags '-s -w', fewer dependencies) or ship it as a container image")
    return function.size > MAX_ZIP_IN_REQUEST


def write_zip(out_zip: Path, files: Mapping[str, bytes]) -> Artifact:
    """The one zip writer: sorted entries, fixed time and mode, no directory entries, no extra fields.

    Each name becomes a 0755 regular file (unzip creates parent directories without entries for them).
    Written to a temporary file and renamed, so a reader never sees half a zip.
    """
    for name in files:
        check_handler(name)  # each name is a handler the bootstrap will exec: Lambda's rule, and ours
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out_zip.parent, prefix=f".{out_zip.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as raw:
            with zipfile.ZipFile(raw, "w") as zf:
                for name in sorted(files):
                    info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
                    info.create_system = UNIX
                    info.external_attr = EXEC_ATTR
                    zf.writestr(info, files[name], compress_type=zipfile.ZIP_DEFLATED,
                                compresslevel=COMPRESS_LEVEL)
            raw.seek(0)
            digest = hashlib.file_digest(raw, "sha256").hexdigest()
            size = raw.tell()
        # mkstemp makes 0600; a build output is for anyone to read, whatever the umask of the moment.
        tmp.chmod(0o644)
        tmp.replace(out_zip)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Artifact(out_zip, digest, size, sum(len(data) for data in files.values()))


def _read_regular_file(path: Path) -> bytes:
    """The file's bytes; refuses symlinks (O_NOFOLLOW: nothing can swap one in after a check) and non-files.

    A symlink in a zip is extracted as a link on Lambda, pointing at a path that does not exist there.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise PackageError(f"binary {path} does not exist", "build it first (go-arm-lambda build)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PackageError(f"binary {path} is a symlink: go-arm-lambda never puts symlinks in a zip",
                               f"point at the real file ({os.path.realpath(path)})") from None
        raise PackageError(f"cannot read binary {path}: {exc.strerror}",
                           "check the path and its permissions") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PackageError(f"binary {path} is not a regular file", "point at the built executable")
        with open(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)

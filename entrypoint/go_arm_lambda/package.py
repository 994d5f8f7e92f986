"""Deterministic zips of functions and of the bootstrap layer, Lambda's size limits, and safe extraction.

The same binary must give the same zip, byte for byte, on every run: the zip's sha256 is how deploy decides
"unchanged" (Lambda reports it as CodeSha256), so everything in the zip's own layout that varies with the
clock, the umask or the OS (timestamps, modes, owner fields, entry order, compression level) is fixed here.
The compressed bytes come from libdeflate (the `deflate` package, pinned): deflate's output is not specified
byte for byte, and zlib's differs between builds (zlib-ng, vendor-tuned builds, major versions), ISA-L's even
with the CPU it runs on. libdeflate's did not: the same input gave the same bytes natively and under qemu
emulating an AVX-512, a Skylake, a Nehalem and a Core 2 CPU (tests/test_package.py checks the last two on
every run). So a zip's bytes follow the binary and the pinned `deflate` alone, not the machine or its zlib.
A zip written by a go-arm-lambda that compressed with zlib (before libdeflate) has other bytes: deploy sees a
code change once after the upgrade, and then no more.
"""
from __future__ import annotations

import base64
import errno
import hashlib
import os
import re
import shutil
import stat
import struct
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

import deflate

from go_arm_lambda import cache
from go_arm_lambda.errors import PackageError, UsageError
from go_arm_lambda.limits import MAX_UNZIPPED, MAX_ZIP_IN_REQUEST, check_handler

# The earliest time a zip can hold: any fixed value works, and this one plainly is not a real build time.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
# Everything we zip is a program Lambda executes: a regular file, rwxr-xr-x, in the high 16 bits where Unix
# unzip (and Lambda) read it; create_system 3 says "Unix" so they trust it. Without this a zip made on
# Windows loses the exec bit and the function fails with `permission denied`.
EXEC_ATTR = (stat.S_IFREG | 0o755) << 16
UNIX = 3
# libdeflate's level 1. Of a 5.8 MB Go binary it makes 2.54 MB in 42 ms, both less than zlib's level 1 (2.58 MB
# in 92 ms); its level 2 makes 2.44 MB in 53 ms, its level 6 2.35 MB in 81 ms. A cold build zips every function,
# 200 of them in a large repository, inside the build's time budget; the 0.1-0.2 MB more to upload per changed
# function cost less. Fixed, so the bytes do not depend on a default.
COMPRESS_LEVEL = 1
# What a zip's bytes depend on besides the files in it, for the content cache's keys: bump the first number when
# write_zip's layout changes.
ZIP_FORMAT = (2, "libdeflate", deflate.__version__, COMPRESS_LEVEL)

# The zip structures write_zip writes (APPNOTE.TXT 4.3): local file header, central directory header, end of
# central directory record. Version 2.0 is what deflate needs, and what zipfile writes for it.
_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s4B4H3L5H2L")
_END = struct.Struct("<4s4H2LH")
_VERSION = 20
_DEFLATED = 8
_UTF8_NAME = 0x800  # the flag zipfile sets, and unzip reads, for a name that is not ASCII
_DOS_TIME = (ZIP_TIME[3] << 11) | (ZIP_TIME[4] << 5) | (ZIP_TIME[5] // 2)
_DOS_DATE = ((ZIP_TIME[0] - 1980) << 9) | (ZIP_TIME[1] << 5) | ZIP_TIME[2]
# Sizes and offsets are 32 bits, and all ones means "look in the zip64 field", which this writer never writes:
# Lambda unzips 250 MB at most, so past this there is nothing to deploy anyway.
_ZIP32_MAX = 0xFFFF_FFFE
_MAX_ENTRIES = 0xFFFE  # the count's field is 16 bits, all ones meaning zip64 as well
_ENCRYPTED = 0x1

_OVER_UNZIPPED = f"over Lambda's limit of {MAX_UNZIPPED:,} bytes (250 MB) for a function and its layers"

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


def package_function(binary: Path, handler: str, out_zip: Path, data: bytes | None = None) -> Artifact:
    """The function zip: `binary` at the root under the name `handler` (what the bootstrap will exec).

    `data`: the binary's bytes when the caller has read them already (the cache zips exactly what it hashed).
    """
    return write_zip(out_zip, {handler: _read_regular_file(binary) if data is None else data})


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
            f"function {name} is {unzipped:,} bytes unzipped{with_layer}, {_OVER_UNZIPPED}",
            "make the binary smaller (-ldflags '-s -w', fewer dependencies) or ship it as a container image")
    return function.size > MAX_ZIP_IN_REQUEST


def write_zip(out_zip: Path, files: Mapping[str, bytes]) -> Artifact:
    """The one zip writer: sorted entries, fixed time and mode, no directory entries, no extra fields.

    Each name becomes a 0755 regular file (unzip creates parent directories without entries for them).
    zipfile cannot store bytes compressed elsewhere, so the few structures around libdeflate's are written
    here, field for field as zipfile writes them. Written to a temporary file and renamed, so a reader never
    sees half a zip.
    """
    names = sorted(files)
    for name in names:
        check_handler(name)  # each name is a handler the bootstrap will exec: Lambda's rule, and ours
    if len(names) > _MAX_ENTRIES:
        raise PackageError(f"{len(names):,} files are more than a zip without zip64 holds ({_MAX_ENTRIES:,})",
                           "put fewer files in one zip")
    digest = hashlib.sha256()
    size = 0

    def put(*chunks: bytes) -> None:
        nonlocal size
        for chunk in chunks:
            raw.write(chunk)
            digest.update(chunk)  # hashed as written: the zip is never read back
            size += len(chunk)

    with cache.atomic_file(out_zip) as raw:
        central: list[bytes] = []
        for name in names:
            data = files[name]
            _check_zip32(len(data), f"{name!r} is")  # before compressing what could never be written
            try:
                encoded, flags = name.encode("ascii"), 0
            except UnicodeEncodeError:
                encoded, flags = name.encode(), _UTF8_NAME
            compressed = deflate.deflate_compress(data, COMPRESS_LEVEL)
            # Where the next header or the directory would start; also bounds the compressed size.
            _check_zip32(size + _LOCAL.size + len(encoded) + len(compressed), f"{str(out_zip)!r} would be")
            fields = (flags, _DEFLATED, _DOS_TIME, _DOS_DATE, deflate.crc32(data), len(compressed), len(data))
            central.append(_CENTRAL.pack(b"PK\1\2", _VERSION, UNIX, _VERSION, 0, *fields, len(encoded),
                                         0, 0, 0, 0, EXEC_ATTR, size) + encoded)
            put(_LOCAL.pack(b"PK\3\4", _VERSION, *fields, len(encoded), 0), encoded, compressed)
        start = size
        put(*central)
        put(_END.pack(b"PK\5\6", 0, 0, len(central), len(central), size - start, start, 0))
    return Artifact(out_zip, digest.hexdigest(), size, sum(len(data) for data in files.values()))


def _check_zip32(value: int, subject: str) -> None:
    if value > _ZIP32_MAX:
        raise PackageError(f"{subject} {value:,} bytes, more than a zip without zip64 holds (4 GiB)",
                           "Lambda unzips at most 250 MB for a function and its layers: make the binary smaller "
                           "(-ldflags '-s -w', fewer dependencies)")


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


# ---------------------------------------------------------------------------------------------- extracting

def _copy_same(info: zipfile.ZipInfo, source: Path | None, target: Path) -> bool:
    """Write `source` to `target` if it holds the entry's bytes by the zip's own record (size, CRC-32)."""
    if source is None:
        return False
    try:
        data = source.read_bytes()
    except OSError:
        return False
    if len(data) != info.file_size or deflate.crc32(data) != info.CRC:
        return False
    target.write_bytes(data)
    return True


def extract_zip(zip_path: Path, dest: Path, sources: Mapping[str, Path] | None = None) -> None:
    """Extract with the unix permission bits the zip carries (zipfile drops them), refusing names outside
    `dest`, more than Lambda would unzip, and entries this file system cannot hold.

    The modes matter: a handler stored without its exec bit is what breaks in Lambda, so it must break here.
    `sources`: files that hold some entries' bytes (the binary a function zip was made from). Such an entry is
    copied from its file when the size and CRC-32 the zip records match it, instead of inflated: megabytes a
    smoke run need not decompress. Names, modes and every check are the zip's all the same.
    """
    try:
        _extract(zip_path, dest.resolve(), sources or {})
    # NotImplementedError: zipfile's word for a compression method it does not know.
    except (zipfile.BadZipFile, zlib.error, deflate.DeflateError, EOFError, UnicodeDecodeError,
            NotImplementedError) as exc:
        raise UsageError(f"{str(zip_path)!r} is damaged ({exc})", "package the function again") from None


def _extract(zip_path: Path, root: Path, sources: Mapping[str, Path]) -> None:
    seen: set[str] = set()
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
        # zipfile stops each entry at its declared size (and checks its CRC there), so the sum bounds what
        # is written: a zip bomb is refused before its first byte lands on disk.
        unzipped = sum(info.file_size for info in infos)
        if unzipped > MAX_UNZIPPED:
            raise UsageError(f"{str(zip_path)!r} unzips to {unzipped:,} bytes, {_OVER_UNZIPPED}",
                             "make the binary smaller (-ldflags '-s -w', fewer dependencies)")
        for info in infos:
            name = info.filename
            if name.startswith(("/", "\\")) or ".." in Path(name).parts or re.match(r"^[A-Za-z]:", name):
                raise UsageError(f"{str(zip_path)!r} holds an unsafe name {name!r}",
                                 "rebuild the zip with relative names only (go-arm-lambda package does)")
            if name.rstrip("/") in seen:  # a second copy could re-point a link already checked
                raise UsageError(f"{str(zip_path)!r} holds {name!r} twice", "rebuild the zip")
            seen.add(name.rstrip("/"))
            if info.flag_bits & _ENCRYPTED:  # zipfile would raise RuntimeError, asking for the password
                raise UsageError(f"{str(zip_path)!r} holds {name!r} encrypted, which Lambda cannot unzip",
                                 "rebuild the zip without a password")
            try:
                _extract_entry(zf, info, root, zip_path, sources.get(name))
            except OSError as exc:  # a name too long for this file system, "a" then "a/b", ...
                clash = exc.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR)
                why = "a file and a directory in it share a path" if clash else exc.strerror or str(exc)
                raise UsageError(f"{str(zip_path)!r} holds {name!r}, which cannot be extracted: {why}",
                                 "rebuild the zip (go-arm-lambda package writes one file per name)") from None


def _extract_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, root: Path, zip_path: Path,
                   source: Path | None) -> None:
    name = info.filename
    mode = (info.external_attr >> 16) if info.create_system == 3 else 0
    target = root / name
    if not target.parent.resolve().is_relative_to(root):
        raise UsageError(f"{str(zip_path)!r} writes {name!r} through a link outside the archive",
                         "rebuild the zip without symlinks that point outside it")
    if info.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if stat.S_ISLNK(mode):
        link = zf.read(info).decode()
        if "\0" in link:  # no file system holds it; Python's path functions raise ValueError on it
            raise OSError(errno.EINVAL, "its link target holds a NUL byte")
        if os.path.isabs(link) or not (target.parent / link).resolve().is_relative_to(root):
            raise UsageError(f"{str(zip_path)!r} holds a symlink {name!r} -> {link!r} outside it",
                             "ship the file itself instead of a link")
        target.symlink_to(link)
        return
    if not _copy_same(info, source, target):
        if info.compress_type == zipfile.ZIP_DEFLATED:
            target.write_bytes(_inflate(zip_path, info))
        else:
            with zf.open(info) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out)
    # Permission bits only: a setuid, setgid or sticky bit from a zip has no business on this machine. No
    # unix mode at all (a zip made on Windows) means no exec bit, so a handler packaged that way fails here.
    target.chmod(mode & 0o777 if mode else 0o644)


def _inflate(zip_path: Path, info: zipfile.ZipInfo) -> bytes:
    """A deflated entry's bytes, by libdeflate in one call: a third of the time of zipfile's zlib stream (10
    vs 32 ms for a 5.8 MB Go binary), paid by every smoke run with no binary to copy from, and by each Invoke
    the tests answer. The size and CRC-32 are checked as zipfile checks them: a damaged entry is a DeflateError
    or BadZipFile, never wrong bytes."""
    with zip_path.open("rb") as f:
        f.seek(info.header_offset)
        header = f.read(_LOCAL.size)
        if len(header) != _LOCAL.size or header[:4] != b"PK\3\4":
            raise zipfile.BadZipFile(f"no local header for {info.filename!r}")
        name_len, extra_len = _LOCAL.unpack(header)[-2:]
        f.seek(name_len + extra_len, os.SEEK_CUR)
        compressed = f.read(info.compress_size)
    data = deflate.deflate_decompress(compressed, info.file_size)  # the size bounds it; it may end short
    if len(data) != info.file_size or deflate.crc32(data) != info.CRC:
        raise zipfile.BadZipFile(f"{info.filename!r} is not the size or CRC-32 its directory entry says")
    return data

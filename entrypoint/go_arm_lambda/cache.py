"""The content cache (`.go-arm-lambda/cache`): work already done for the same bytes is not done again.

Keyed by content only. A binary's sha256 (with its handler and the zip writer's settings) gives its zip; the same
sha256 (with its file name, which verify's messages quote, the words they name an input with, and the policy) gives
its verify verdict; a zip's sha256 with the layer's, the event's, the runtime, the timeout and the names the
function sees gives its smoke result. No key holds a package path, a source file or a time: the Go build decides
which binaries change (it follows the sources, go.mod, the flags and the toolchain) and the cache follows the
binaries' bytes, so it cannot serve a stale artifact. (SAM's `--cached` hashes each function's own folder and serves
the old binary after a change to a shared package.) Every key also holds the cache's format and a digest of
go-arm-lambda's own code: no release (nor an edited checkout) reads another's entries.

Nothing read from the cache is trusted as it is. A record carries its format, kind and key and a checksum of its
value; a cached zip's sha256 is in its record and the file is hashed again (through the stat memo) before it is
used. An entry that does not check out is removed and rebuilt. Every file is written under a temporary name and
renamed, so a reader never sees half an entry, and two runs sharing a cache at worst do the same work twice.

Pure file operations: no process, no network, nothing of the stages' types (their owners turn them into the
plain JSON values stored here).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from go_arm_lambda import __version__

# Bump when what an entry holds, or how a key is made, changes meaning: older entries then simply never match.
FORMAT = 1
# Entries unused for this long are removed (checked at most once a day), so the directory users keep with
# actions/cache does not grow with every change ever built.
MAX_AGE_S = 14 * 86400
PRUNE_EVERY_S = 86400
# A file system that stores sub-second times stamps a change with the kernel's clock tick (at most 10 ms late);
# one that stores whole seconds (ext3, HFS+; FAT even 2 s) can hide a change for up to 2 s.
FINE_MARGIN_NS = 100_000_000
COARSE_MARGIN_NS = 2_000_000_000
HEAD_BYTES = 16384

Problem = Callable[[str], None]


# ---------------------------------------------------------------------------------------------- stat memo

@dataclass(frozen=True)
class Stamp:
    """What changes whenever a file's bytes may have: a new file (rename, copy) has another inode, a write in
    place moves mtime and ctime, and ctime cannot be set back from user space (`touch -d` sets it to now)."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Stamp:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def margin_ns(self) -> int:
        whole_seconds = self.mtime_ns % 1_000_000_000 == 0 and self.ctime_ns % 1_000_000_000 == 0
        return COARSE_MARGIN_NS if whole_seconds else FINE_MARGIN_NS

    def settled(self, seen_ns: int) -> bool:
        """Whether any change after `seen_ns` must show in the stamp: git's "racily clean" problem. A change
        made later gets a ctime of at least seen_ns less the file system's step; a file last changed longer ago
        than that step (as our clock and the file system's agree, true of local file systems) cannot be
        changed again without its ctime moving. A file read sooner after its last change is hashed again."""
        return self.ctime_ns < seen_ns - self.margin_ns()


@dataclass(frozen=True)
class _Reading:
    stamp: Stamp
    seen_ns: int  # our clock before the stamp was taken and the bytes were read
    sha256: str


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A file to write `path` through: a temporary file beside it, renamed over it (mode 0644, whatever the
    umask) when the block ends, removed when the block raises. A reader never sees half a file, and an error
    names `path`, never the temporary file: a name the user never gave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}."
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename and os.path.basename(exc.filename).startswith(prefix):
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def atomic_write(path: Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


class Digests:
    """The sha256 of files, remembered with their `Stamp`, as git's index does and for the same reason: an
    unchanged run would otherwise read and hash every binary and zip again, a gigabyte for 200 functions.

    A remembered digest is used only while the file's stamp is the one seen when it was hashed, and the reading
    was `settled`. Two steps go beyond git's rule, both resting on one premise: while a run goes, nothing but
    its go build and the run itself writes into its output and cache directories. `after_build` carries a
    digest over go build's touch of an up-to-date binary, and `wrote` lets a file this run wrote be trusted
    with the digest of the bytes it wrote, once settled, instead of reading it back.

    The memo is one file, written atomically at the end of a run, holding what that run read or confirmed. A
    lost or damaged memo costs one round of hashing, never a wrong answer."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._known: dict[str, _Reading] = self._load() if path else {}
        self._used: dict[str, _Reading] = {}
        self._written: dict[str, _Reading] = {}
        self._lock = threading.Lock()

    def _load(self) -> dict[str, _Reading]:
        assert self._path is not None
        try:
            doc = json.loads(self._path.read_bytes())
            if doc.get("format") != FORMAT:
                return {}
            return {p: _Reading(Stamp(*e[:5]), e[5], e[6]) for p, e in doc["files"].items()
                    if isinstance(e[6], str) and len(e[6]) == 64}
        except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
            return {}  # none yet, or damaged: everything is hashed once more

    def known(self, path: Path, st: os.stat_result | None = None) -> str | None:
        """The remembered sha256 of `path` as it is now, or None when it must be read."""
        key = os.path.abspath(path)
        if st is None:
            try:
                st = os.stat(path)
            except OSError:
                return None
        with self._lock:
            reading = self._used.get(key) or self._known.get(key)
            if reading is None or reading.stamp != Stamp.of(st) or not reading.stamp.settled(reading.seen_ns):
                return None
            self._used[key] = reading
            return reading.sha256

    def of_file(self, path: Path) -> str:
        """The file's sha256: remembered, else read and hashed (and remembered)."""
        digest = self.known(path)
        if digest is not None:
            return digest
        seen_ns = time.time_ns()
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        self.remember(path, st, seen_ns, digest)
        return digest

    def of_bytes(self, path: Path, data: bytes, st: os.stat_result, seen_ns: int) -> str:
        """The sha256 of `data`, read from `path` after `seen_ns` with the stamp `st`: remembered when the file
        is known unchanged since it was hashed, else computed from these very bytes."""
        digest = self.known(path, st)
        if digest is None:
            digest = hashlib.sha256(data).hexdigest()
            self.remember(path, st, seen_ns, digest)
        return digest

    def read(self, path: Path) -> tuple[bytes, str] | None:
        """A regular file's bytes and their sha256, from one reading (so that what is stored under a digest is
        what was hashed); None for a symlink, a non-file or an unreadable path (the caller says why)."""
        seen_ns = time.time_ns()
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        with open(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            data = f.read()
            changed = Stamp.of(os.fstat(fd)) != Stamp.of(st)
        if changed:  # written to while read: these bytes are their own, whatever the memo knows
            return data, hashlib.sha256(data).hexdigest()
        return data, self.of_bytes(path, data, st, seen_ns)

    def remember(self, path: Path, st: os.stat_result, seen_ns: int, digest: str) -> None:
        """A reading: `path` had the stamp `st` and bytes hashing to `digest` as seen after `seen_ns`. One taken
        too soon after the file's last change is kept but not trusted (`known` hashes the file again)."""
        with self._lock:
            self._used[os.path.abspath(path)] = _Reading(Stamp.of(st), seen_ns, digest)

    def wrote(self, path: Path, digest: str) -> None:
        """This run has just made `path` hold bytes hashing to `digest`: trusted from the end of the run on
        (`save`), so that the next run does not read back what this one wrote."""
        st = os.stat(path)
        with self._lock:
            self._written[os.path.abspath(path)] = _Reading(Stamp.of(st), time.time_ns(), digest)

    def before_build(self, directories: Iterable[Path]) -> dict[str, tuple[str, Stamp, bytes]]:
        """What a `go build` into `directories` may keep: each file there whose digest is known, with its stamp
        and its first bytes (where Go's build ID is). See `after_build`."""
        kept: dict[str, tuple[str, Stamp, bytes]] = {}
        for path, st in _regular_files(directories):
            digest = self.known(path, st)
            if digest is not None:
                with contextlib.suppress(OSError):
                    kept[os.path.abspath(path)] = (digest, Stamp.of(st), _head(path))
        return kept

    def after_build(self, before: dict[str, tuple[str, Stamp, bytes]], directories: Iterable[Path]) -> None:
        """Once `go build` into `directories` is done: let every file there settle, and carry the digests of
        the binaries it left as they were over its touch.

        For an up-to-date target go build reads the build ID, finds the action ID it expects, and sets the file's
        times to now (os.Chtimes, on purpose, for mtime-based tools): the same bytes under a new stamp, which
        would cost every unchanged run a reading of every binary. Go never writes a target in place (it renames
        a new file over it, or removes it and creates it again), so a file with the same device, inode, size and
        first bytes (its build ID) as before is one it only touched."""
        files = list(_regular_files(directories))
        if not files:
            return
        # Whatever is hashed from now on is settled: the wait (at most 0.1 s) is paid once, here.
        newest = max(files, key=lambda f: f[1].st_ctime_ns)[1]
        _wait_out(Stamp.of(newest))
        seen_ns = time.time_ns()
        for path, st in files:
            key = os.path.abspath(path)
            if key not in before:
                continue
            digest, stamp, head = before[key]
            now = Stamp.of(st)
            with contextlib.suppress(OSError):
                if now != stamp and (now.dev, now.ino, now.size) == (stamp.dev, stamp.ino, stamp.size) \
                        and _head(path) == head and Stamp.of(os.stat(path)) == now:
                    self.remember(path, st, seen_ns, digest)

    def save(self) -> None:
        """Write the memo: what this run read, and the files it wrote that are still as it left them."""
        if self._path is None:
            return
        with self._lock:
            written, self._written = self._written, {}
        if written:
            _wait_out(max((r.stamp for r in written.values()), key=lambda s: s.ctime_ns))
        seen_ns = time.time_ns()
        for key, reading in written.items():
            with contextlib.suppress(OSError):
                st = os.stat(key)
                if Stamp.of(st) == reading.stamp:
                    self.remember(Path(key), st, seen_ns, reading.sha256)
        with self._lock:
            files = {p: [*r.stamp.__dict__.values(), r.seen_ns, r.sha256] for p, r in sorted(self._used.items())}
        atomic_write(self._path, json.dumps({"format": FORMAT, "files": files}).encode())


def _wait_out(stamp: Stamp) -> None:
    """Sleep until a file with this stamp has settled (at most the margin: 0.1 s on today's file systems)."""
    wait_ns = stamp.ctime_ns + stamp.margin_ns() - time.time_ns()
    if wait_ns > 0:
        time.sleep(min(wait_ns, COARSE_MARGIN_NS) / 1e9 + 0.001)


def _regular_files(directories: Iterable[Path]) -> Iterator[tuple[Path, os.stat_result]]:
    for directory in directories:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    yield Path(entry.path), st


# ---------------------------------------------------------------------------------------------- the cache

@dataclass(frozen=True)
class CachedZip:
    path: Path
    sha256: str
    size: int
    unzipped_size: int
    inode: tuple[int, int]  # (device, inode) of the file as checked


def key(kind: str, *parts: object) -> str:
    """The key of an entry: a digest of everything its content depends on (JSON values), and of the code that
    made it."""
    text = json.dumps([FORMAT, __version__, code_digest(), kind, *parts], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def code_digest() -> str:
    """go-arm-lambda's own code, as the version of what made an entry: a release has its own version, but a
    change between releases (a checkout, an edit under test) would otherwise be served its predecessor's
    verdicts and smoke results."""
    h = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        h.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return h.hexdigest()


def _checksum(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Cache:
    """One cache directory. Thread-safe: the stages look entries up and store them from their pools.

    A cache that cannot be written does not fail the job (it is only ever a shortcut): the first problem is
    reported through `on_problem`, and the run goes on without storing.
    """

    def __init__(self, root: Path, on_problem: Problem | None = None) -> None:
        self.root = root / f"v{FORMAT}"
        self.digests = Digests(self.root / "stat-memo.json")
        self._on_problem = on_problem
        self._reported = False
        self._lock = threading.Lock()

    # -- records: small JSON values (verify verdicts, smoke results, zip descriptions) ---------------------

    def _record_path(self, kind: str, k: str) -> Path:
        return self.root / kind / k[:2] / f"{k}.json"

    def get(self, kind: str, k: str, decode: Callable[[Any], Any] | None = None) -> Any | None:
        """The value stored under `k`, or None: also when the record is damaged or foreign (it is removed).
        `decode`, its owner's reading of the value (`Verdict.from_record`), gives what is returned; a value it
        refuses as of another shape (KeyError, TypeError, ValueError) is a damaged record too."""
        path = self._record_path(kind, k)
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            self._discard(path)
            return None
        if not (isinstance(doc, dict) and doc.get("format") == FORMAT and doc.get("kind") == kind
                and doc.get("key") == k and "value" in doc and doc.get("checksum") == _checksum(doc["value"])):
            self._discard(path)
            return None
        value = doc["value"]
        if decode is not None:
            try:
                value = decode(value)
            except (KeyError, TypeError, ValueError):
                self._discard(path)
                return None
        with contextlib.suppress(OSError):
            os.utime(path)  # used: kept by the pruning
        return value

    def put(self, kind: str, k: str, value: Any) -> None:
        doc = {"format": FORMAT, "kind": kind, "key": k, "value": value, "checksum": _checksum(value)}
        with self._storing():
            atomic_write(self._record_path(kind, k), json.dumps(doc).encode())

    def drop(self, kind: str, k: str) -> None:
        self._discard(self._record_path(kind, k))

    # -- zips -----------------------------------------------------------------------------------------------

    def _zip_path(self, k: str) -> Path:
        return self.root / "zips" / k[:2] / f"{k}.zip"

    def zip(self, k: str) -> CachedZip | None:
        """The zip stored under `k`, once its bytes are checked against its record; None (and the entry
        removed) when it is missing, damaged or foreign."""
        record = self.get("zip", k)
        path = self._zip_path(k)
        if record is None:
            return None
        try:
            sha256, size, unzipped = record["sha256"], int(record["size"]), int(record["unzipped_size"])
            st = os.stat(path)
            actual = self.digests.known(path, st) or self.digests.of_file(path)
        except (OSError, KeyError, TypeError, ValueError):
            actual, st = None, None
        if st is None or actual != sha256 or st.st_size != size:
            self.drop("zip", k)
            self._discard(path)
            return None
        return CachedZip(path, sha256, size, unzipped, (st.st_dev, st.st_ino))

    def put_zip(self, k: str, made: Path, sha256: str, size: int, unzipped_size: int) -> None:
        """Store the zip at `made` (hard-linked when the cache shares its file system: no bytes copied)."""
        with self._storing():
            dest = self._zip_path(k)
            self.digests.wrote(made, sha256)
            _link_or_copy(made, dest)
            self.digests.wrote(dest, sha256)
            self.put("zip", k, {"sha256": sha256, "size": size, "unzipped_size": unzipped_size})

    def place(self, cached: CachedZip, dest: Path) -> None:
        """Make `dest` hold the cached zip: nothing to do when it is that very file or has its bytes already."""
        try:
            st = os.stat(dest)
        except OSError:
            st = None
        if st is not None and ((st.st_dev, st.st_ino) == cached.inode
                               or self.digests.known(dest, st) == cached.sha256):
            return
        _link_or_copy(cached.path, dest)
        self.digests.wrote(dest, cached.sha256)

    # -- upkeep ---------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Save the stat memo, and now and then remove what has not been used for MAX_AGE_S."""
        with self._storing():
            self.digests.save()
            marker = self.root / "last-pruned"
            try:
                due = time.time() - marker.stat().st_mtime > PRUNE_EVERY_S
            except FileNotFoundError:
                due = True
            if due:
                self.prune(time.time() - MAX_AGE_S)
                atomic_write(marker, b"")

    def prune(self, unused_since: float) -> int:
        """Remove entries whose record was last used before `unused_since` (epoch seconds), and zips whose
        record is gone. Returns how many entries went."""
        removed = 0
        for record in _files(self.root, ".json"):
            if record.name == "stat-memo.json":
                continue
            with contextlib.suppress(OSError):
                if record.stat().st_mtime < unused_since:
                    record.unlink()
                    removed += 1
        for z in _files(self.root / "zips", ".zip"):
            if not self._record_path("zip", z.stem).exists():
                with contextlib.suppress(OSError):
                    z.unlink()
        for tmp in _files(self.root, ".tmp"):  # left by a run that was killed while writing
            with contextlib.suppress(OSError):
                if tmp.stat().st_mtime < unused_since:
                    tmp.unlink()
        return removed

    @contextlib.contextmanager
    def _storing(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            with self._lock:
                first, self._reported = not self._reported, True
            if first and self._on_problem is not None:
                where = exc.filename or self.root
                self._on_problem(f"cache: cannot write {where} ({exc.strerror or exc}); this run goes on without "
                                 "storing, so the next one redoes its work: make the cache directory writable")

    def _discard(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()


def _head(path: Path) -> bytes:
    """A binary's first bytes: ELF and program headers, and Go's build ID note just after them."""
    with open(path, "rb") as f:
        return f.read(HEAD_BYTES)


def _files(root: Path, suffix: str) -> Iterator[Path]:
    if not root.is_dir():
        return
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            if name.endswith(suffix):
                yield Path(dirpath, name)


def _link_or_copy(src: Path, dest: Path) -> None:
    """`dest` becomes `src`'s bytes, atomically: a hard link when both share a file system (the bytes are not
    copied, and a file changed in place afterwards shows in both stamps, so neither is trusted), else a copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                raise
            shutil.copyfile(src, tmp)
            os.chmod(tmp, stat.S_IMODE(os.stat(src).st_mode))
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

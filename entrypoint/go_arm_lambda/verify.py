"""Check a binary before it ships: would Lambda's arm64 provided.* runtimes start it, and would it answer?

Pure: the file is read (pyelftools and our own build-info reader over an mmap), never run.
`read_binary` turns whatever it is given into a `BinaryReport`, however broken the input: the parsers' own
errors become one fixed sentence naming the part of the file that is corrupt. Only those are caught, so a
bug in the reader still surfaces as a bug (the fuzz tests rely on that). `judge` holds the policy: each
`Finding` says what is wrong and what to do, in the words Lambda would otherwise use in production
(`exec format error`, `GLIBC_2.xx not found`, SIGILL, a function that never answers).
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import stat
import textwrap
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from elftools.common.exceptions import ELFError
from elftools.construct import ConstructError
from elftools.elf.constants import P_FLAGS
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

from go_arm_lambda import limits
from go_arm_lambda.errors import UsageError

Severity = Literal["error", "warning"]

LAMBDA_GO = "github.com/aws/aws-lambda-go"
MIN_LAMBDA_GO = (1, 18)  # older releases have no Runtime API client, only go1.x's RPC mode
LOADER = "/lib/ld-linux-aarch64.so.1"
# Parts of glibc itself: present on every provided.* image. libresolv is glibc too.
GLIBC_LIBS = frozenset({"libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1",
                        "libresolv.so.2", "ld-linux-aarch64.so.1"})
# Version names that are not GLIBC_x.y but still demand a glibc at least this new.
_GLIBC_MARKERS = {"GLIBC_ABI_DT_RELR": (2, 36)}

_ELF_MAGIC = b"\x7fELF"
_BUILDINFO_MAGIC = b"\xff Go buildinf:"
_BUILDINFO_HEADER = 32
_BUILDINFO_ALIGN = 16
_SEARCH_LIMIT = 64 * 1024
_MAX_GO_STRING = 8 * 1024 * 1024  # a modinfo is a few KiB; a length near this is garbage, not a module list
_SENTINEL = 16  # modinfo's framing bytes at each end (cmd/go/internal/modload infoStart/infoEnd)

_ARCH_NAMES = {"EM_AARCH64": "aarch64", "EM_X86_64": "x86-64", "EM_ARM": "arm", "EM_386": "x86",
               "EM_RISCV": "riscv", "EM_PPC64": "ppc64", "EM_S390": "s390x", "EM_MIPS": "mips"}
# Files people pass by mistake, recognised by their first bytes.
_FOREIGN = ((b"\xcf\xfa\xed\xfe", "a Mach-O executable for macOS (GOOS=darwin)"),
            (b"\xca\xfe\xba\xbe", "a Mach-O universal binary for macOS"),
            (b"MZ", "a Windows executable (GOOS=windows)"),
            (b"#!", "a script"),
            (b"!<arch>\n", "an ar archive (a Go package archive or C static library, not a program)"))


_REBUILD = "build it with GOOS=linux GOARCH=arm64"
_WONT_START = f"Lambda would fail with `exec format error`; {_REBUILD}"


@dataclass(frozen=True)
class GoBuildInfo:
    """What `go version -m` prints. `deps` has `=>` replacements applied: the replacement's version, or its
    path for a local directory replacement (which has no version)."""

    go_version: str
    path: str = ""  # the main package
    main_module: str = ""
    main_version: str = ""
    deps: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    modinfo: str = ""  # the text as stored, without its sentinels


@dataclass
class BinaryReport:
    path: Path
    size: int | None = None  # None: the file could not be read at all
    is_elf: bool = False
    elf_class: int | None = None  # 32 or 64
    endianness: Literal["little", "big"] | None = None
    arch: str | None = None  # "aarch64", "x86-64", "arm", ... (unknown machines: e_machine without EM_)
    elf_type: str | None = None  # "EXEC", "DYN", "REL", "CORE", ...
    entry: int | None = None  # e_entry; 0 in a shared library
    static: bool | None = None
    interpreter: str | None = None
    glibc_required: list[str] = field(default_factory=list)
    needed: list[str] = field(default_factory=list)
    go: GoBuildInfo | None = None
    problems: list[str] = field(default_factory=list)  # each a complete "what; what to do" sentence

    @property
    def name(self) -> str:
        return self.path.name or str(self.path)

    @property
    def go_version(self) -> str | None:
        return self.go.go_version if self.go else None

    @property
    def lambda_go_version(self) -> str | None:
        return self.go.deps.get(LAMBDA_GO) if self.go else None


class _Corrupt(Exception):
    """The file is an ELF whose headers cannot be trusted, so the kernel would refuse it too; the message is
    the finding."""


class _Damaged(_Corrupt):
    """The headers the kernel reads are sound, but a part only tools read (sections, the dynamic table, the
    Go build info) is not: it might even start, but it is not the file the toolchain wrote."""


@contextmanager
def _parsing(part: str, error: type[_Corrupt] = _Corrupt) -> Iterator[None]:
    """pyelftools and construct raise their own errors on bad bytes, worded for their authors (`expected 4,
    found 0`); the user needs to know which part of the file is broken."""
    try:
        yield
    except (ELFError, ConstructError):
        raise error(f"corrupt ELF: {part} cannot be parsed (corrupt or truncated)") from None


# ---------------------------------------------------------------------------------------------- reading

def read_binary(path: Path) -> BinaryReport:
    """Everything verify needs to know about one file. Bad input never raises: an unreadable path, a file
    that is not ELF or a corrupt one becomes `report.problems`. Only a bug in the reader would."""
    report = BinaryReport(path=Path(path))
    try:
        st = os.stat(path)  # follows symlinks, so a loop or a dangling link surfaces here
        if stat.S_ISDIR(st.st_mode):
            report.problems.append(f"{path} is a directory; pass the binary inside it")
            return report
        if not stat.S_ISREG(st.st_mode):
            # Opening a FIFO would block; a device is never a Lambda binary.
            report.problems.append(f"{path} is not a regular file; pass the built binary")
            return report
        with open(path, "rb") as f:
            report.size = os.fstat(f.fileno()).st_size
            if report.size == 0:
                report.problems.append(f"{report.name} is empty (0 bytes): {_WONT_START}")
                return report
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                _read_elf(mm, report)
    except OSError as exc:
        report.problems.append(_os_problem(path, exc))
    except _Damaged as exc:
        report.problems.append(f"{report.name}: {exc}: the file is damaged; rebuild it")
    except _Corrupt as exc:
        report.problems.append(f"{report.name}: {exc}: {_WONT_START}")
    return report


def _os_problem(path: Path, exc: OSError) -> str:
    fixes = {errno.ENOENT: ("does not exist", "check the path, or build the binary first"),
             errno.EACCES: ("cannot be read: permission denied", "make it readable (chmod +r)"),
             errno.EPERM: ("cannot be read: permission denied", "make it readable (chmod +r)"),
             errno.ELOOP: ("is a symlink loop", "point the link at the binary"),
             errno.ENOTDIR: ("is not a path to a file (a parent is not a directory)", "check the path"),
             errno.EISDIR: ("is a directory", "pass the binary inside it")}
    what, fix = fixes.get(exc.errno or 0, (f"cannot be read: {exc.strerror or exc}", "check the file"))
    if exc.errno == errno.ENOENT and os.path.islink(path):
        what, fix = f"is a symlink to {os.readlink(path)}, which does not exist", "point the link at the binary"
    return f"{path} {what}; {fix}"


def _describe_foreign(head: bytes) -> str:
    for magic, what in _FOREIGN:
        if head.startswith(magic):
            return f"but {what}"
    return "(it starts with " + " ".join(f"{b:02x}" for b in head[:4]) + ")"


@dataclass(frozen=True)
class _Load:
    """A PT_LOAD segment: the map from virtual addresses (what Go's pointers hold) to file offsets."""

    vaddr: int
    offset: int
    filesz: int
    memsz: int
    flags: int


class _Stream:
    """The mapped file as the stream pyelftools reads. Any offset may be sought, and reading past the end
    comes back short, which pyelftools reports as its own parse error. A real file object refuses offsets
    past 2**62 (OSError EINVAL) or 2**63 (ValueError), and an mmap any offset past its end (ValueError):
    hostile offsets would otherwise surface as errors that say nothing about the file."""

    def __init__(self, mm: mmap.mmap) -> None:
        self._mm = mm
        self._pos = 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: len(self._mm)}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        if self._pos < 0:  # a negative offset holds nothing, as the end of the file does
            return b""
        end = len(self._mm) if size is None or size < 0 else self._pos + size
        data = self._mm[self._pos:end]
        self._pos += len(data)
        return data


def _read_elf(mm: mmap.mmap, report: BinaryReport) -> None:
    size = len(mm)
    if mm[:4] != _ELF_MAGIC:
        if mm[:4] == b"PK\x03\x04":  # a function zip given by mistake: the binary in it may be fine
            report.problems.append(f"{report.name} is a zip archive, not a binary: verify the binary inside it "
                                   "(unzip it first), or run it with `go-arm-lambda smoke --zip`")
            return
        what = _describe_foreign(mm[:8])
        report.problems.append(f"{report.name} is not an ELF file {what}: {_WONT_START}")
        return
    report.is_elf = True
    ident = mm[:16]
    header_size = {1: 52, 2: 64}.get(ident[4]) if len(ident) == 16 else None
    if header_size is not None and ident[5] not in (1, 2):
        raise _Corrupt(f"corrupt ELF: invalid byte order {ident[5]} in the header")
    if header_size is None or size < header_size:
        raise _Corrupt(f"truncated or corrupt ELF: the file is {size} bytes and has no complete ELF header")
    with _parsing("the ELF header"):
        elf = ELFFile(_Stream(mm))  # type: ignore[arg-type]  # a read-only stream is all pyelftools uses
        report.elf_class = elf.elfclass
        report.endianness = "little" if elf.little_endian else "big"
        machine = str(elf["e_machine"])
        report.arch = _ARCH_NAMES.get(machine, machine.removeprefix("EM_").lower())
        report.elf_type = str(elf["e_type"]).removeprefix("ET_")
        report.entry = elf["e_entry"]
    _check_tables(elf, size)

    loads: list[_Load] = []
    dynamic = False
    with _parsing("the program headers"):
        segments = list(elf.iter_segments())
    for seg in segments:
        kind = seg["p_type"]
        _within(size, seg["p_offset"], seg["p_filesz"], f"a {kind} segment")
        if kind == "PT_LOAD":
            loads.append(_Load(seg["p_vaddr"], seg["p_offset"], seg["p_filesz"], seg["p_memsz"], seg["p_flags"]))
        elif kind == "PT_INTERP":
            raw = mm[seg["p_offset"]:seg["p_offset"] + seg["p_filesz"]].split(b"\0")[0]
            report.interpreter = raw.decode("utf-8", "replace")
        elif kind == "PT_DYNAMIC":
            dynamic = True
            if isinstance(seg, DynamicSegment):
                with _parsing("the dynamic section (the list of shared libraries)", _Damaged):
                    report.needed = [str(t.needed) for t in seg.iter_tags("DT_NEEDED")]
    report.static = report.interpreter is None and not dynamic
    if elf.num_sections():
        with _parsing("the section headers or a section they describe", _Damaged):
            verneed = elf.get_section_by_name(".gnu.version_r")
        if isinstance(verneed, GNUVerNeedSection):
            with _parsing("the symbol version needs (.gnu.version_r)", _Damaged):
                report.glibc_required = _glibc_versions(verneed)
    report.go = _go_build_info(elf, mm, loads)


def _within(size: int, offset: int, length: int, what: str, error: type[_Corrupt] = _Corrupt) -> None:
    if offset + length > size:
        raise error(f"truncated or corrupt ELF: {what} at offset {offset:#x} (+{length} bytes) lies past "
                    f"the end of the file ({size} bytes)")


def _check_tables(elf: ELFFile, size: int) -> None:
    """Bounds-check the header tables before pyelftools walks them, so absurd counts cannot make it loop or
    seek far past the end (e_shnum can come from section 0's sh_size, a 64-bit number)."""
    entry = {"phentsize": 56 if elf.elfclass == 64 else 32, "shentsize": 64 if elf.elfclass == 64 else 40}
    phnum = elf["e_phnum"]
    if phnum:
        if elf["e_phentsize"] != entry["phentsize"]:
            raise _Corrupt(f"corrupt ELF: program header entries are {elf['e_phentsize']} bytes, "
                           f"not {entry['phentsize']}")
        _within(size, elf["e_phoff"], phnum * entry["phentsize"], "the program header table")
    # The kernel never reads sections: a broken table is damage (tools trip over it), not `exec format error`.
    if elf["e_shoff"]:
        _within(size, elf["e_shoff"], entry["shentsize"], "the section header table", _Damaged)
        if elf["e_shentsize"] != entry["shentsize"]:
            raise _Damaged(f"corrupt ELF: section header entries are {elf['e_shentsize']} bytes, "
                           f"not {entry['shentsize']}")
        with _parsing("the section header table", _Damaged):
            count = elf.num_sections()
        _within(size, elf["e_shoff"], count * entry["shentsize"], "the section header table", _Damaged)
        with _parsing("the section headers or a section they describe", _Damaged):
            sections = list(elf.iter_sections())
        for sec in sections:
            if sec["sh_type"] != "SHT_NOBITS":
                _within(size, sec["sh_offset"], sec["sh_size"], f"section {sec.name or '?'}", _Damaged)


def _glibc_key(name: str) -> tuple[int, ...]:
    if name in _GLIBC_MARKERS:
        return _GLIBC_MARKERS[name]
    m = re.fullmatch(r"GLIBC_(\d+)\.(\d+)(?:\.(\d+))?", name)
    return tuple(int(g) for g in m.groups() if g is not None) if m else ()


def _glibc_versions(section: GNUVerNeedSection) -> list[str]:
    names = {str(aux.name) for _, auxes in section.iter_versions() for aux in auxes}
    return sorted((n for n in names if _glibc_key(n)), key=_glibc_key)


# --- Go build info (layout from Go's src/debug/buildinfo) --------------------------------------------------

def _read_vaddr(mm: mmap.mmap, loads: list[_Load], addr: int, length: int) -> bytes:
    """Up to `length` bytes at a virtual address, as far as the PT_LOAD segment holding it has file bytes."""
    for load in loads:
        if load.vaddr <= addr < load.vaddr + load.filesz:
            start = load.offset + addr - load.vaddr
            return mm[start:start + min(length, load.vaddr + load.filesz - addr)]
    return b""


def _buildinfo_window(elf: ELFFile, loads: list[_Load]) -> tuple[int, int] | None:
    with _parsing("the section headers or a section they describe", _Damaged):
        section = elf.get_section_by_name(".go.buildinfo") if elf.num_sections() else None
    if section is not None:
        return section["sh_addr"], section["sh_size"]
    # Binaries with their section headers stripped: the linker puts the blob at the start of the data segment.
    for load in loads:
        if load.flags & (P_FLAGS.PF_W | P_FLAGS.PF_X) == P_FLAGS.PF_W:
            return load.vaddr, load.memsz
    return None


def _uvarint(data: bytes) -> tuple[int, int]:
    """(value, bytes used); bytes used is 0 when the varint is cut short or longer than Go allows."""
    value = 0
    for i, b in enumerate(data[:10]):
        value |= (b & 0x7F) << (7 * i)
        if b < 0x80:
            return value, i + 1
    return 0, 0


def _go_build_info(elf: ELFFile, mm: mmap.mmap, loads: list[_Load]) -> GoBuildInfo | None:
    window = _buildinfo_window(elf, loads)
    if window is None:
        return None
    addr, length = window
    start = -(-addr // _BUILDINFO_ALIGN) * _BUILDINFO_ALIGN
    data = _read_vaddr(mm, loads, start, min(length - (start - addr), _SEARCH_LIMIT))
    at = data.find(_BUILDINFO_MAGIC)
    while at >= 0 and at % _BUILDINFO_ALIGN:
        at = data.find(_BUILDINFO_MAGIC, at + 1)
    if at < 0:
        return None
    header = data[at:at + _BUILDINFO_HEADER]
    if len(header) < _BUILDINFO_HEADER:
        raise _Damaged("corrupt Go build info: the header is cut short")
    if header[15] & 2:  # Go >= 1.18: the two strings follow the header inline
        pos = start + at + _BUILDINFO_HEADER
        version, pos = _inline_string(mm, loads, pos)
        modinfo, _ = _inline_string(mm, loads, pos)
    else:
        version, modinfo = _pointer_strings(mm, loads, header)
    if not version:
        raise _Damaged("corrupt Go build info: no Go version in it")
    # The sentinels are not UTF-8, so they go before decoding; Go drops a modinfo without its framing.
    framed = len(modinfo) >= 2 * _SENTINEL + 1 and modinfo[-_SENTINEL - 1] == ord("\n")
    text = modinfo[_SENTINEL:-_SENTINEL].decode("utf-8", "replace") if framed else ""
    return parse_modinfo(version.decode("utf-8", "replace"), text)


def _inline_string(mm: mmap.mmap, loads: list[_Load], addr: int) -> tuple[bytes, int]:
    length, used = _uvarint(_read_vaddr(mm, loads, addr, 10))
    if not used or length > _MAX_GO_STRING:
        raise _Damaged("corrupt Go build info: a string length is unreadable")
    data = _read_vaddr(mm, loads, addr + used, length)
    if len(data) < length:
        raise _Damaged("corrupt Go build info: a string runs past its segment")
    return data, addr + used + length


def _pointer_strings(mm: mmap.mmap, loads: list[_Load], header: bytes) -> tuple[bytes, bytes]:
    """Before Go 1.18 the header holds the addresses of two Go string headers {data, len}."""
    ptr_size = header[14]
    if ptr_size not in (4, 8):
        raise _Damaged(f"corrupt Go build info: pointer size {ptr_size}")
    order: Literal["little", "big"] = "big" if header[15] & 1 else "little"

    def word(b: bytes) -> int:
        return int.from_bytes(b[:ptr_size], order)

    def go_string(addr: int) -> bytes:
        hdr = _read_vaddr(mm, loads, addr, 2 * ptr_size)
        if len(hdr) < 2 * ptr_size:
            raise _Damaged("corrupt Go build info: a string header points outside the file")
        data_addr, length = word(hdr), word(hdr[ptr_size:])
        data = _read_vaddr(mm, loads, data_addr, min(length, _MAX_GO_STRING))
        if len(data) < length:
            raise _Damaged("corrupt Go build info: a string points outside the file")
        return data

    return go_string(word(header[16:])), go_string(word(header[16 + ptr_size:]))


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`')
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|[0-7]{3}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)")
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _go_unquote(quoted: str) -> str:
    """strconv.Unquote for the strings `go build` writes into build settings (-ldflags="-s -w")."""
    if quoted.startswith("`"):
        return quoted[1:-1]

    def one(m: re.Match[str]) -> str:
        e = m.group(1)
        if len(e) == 1:  # \n, \", ... (and a stray \x or \8 with no digits after it, kept as written)
            return _SIMPLE_ESCAPES.get(e, e)
        code = int(e, 8) if e[0].isdigit() else int(e[1:], 16)
        # Go refuses code points past U+10FFFF and surrogates; a damaged file gets the replacement character.
        return chr(code) if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"

    return _ESCAPE.sub(one, quoted[1:-1])


def _setting(kv: str) -> tuple[str, str] | None:
    quoted_key = _QUOTED.match(kv)
    if quoted_key:
        key, rest = _go_unquote(quoted_key.group()), kv[quoted_key.end():]
        if not rest.startswith("="):
            return None
        value = rest[1:]
    else:
        key, eq, value = kv.partition("=")
        if not eq:
            return None
    if _QUOTED.fullmatch(value):
        value = _go_unquote(value)
    return key, value


def parse_modinfo(go_version: str, text: str) -> GoBuildInfo:
    """The module lines of runtime/debug's BuildInfo.String(); lines it does not know are skipped."""
    path = main_module = main_version = ""
    deps: dict[str, str] = {}
    settings: dict[str, str] = {}
    last_dep: str | None = None  # the module a following `=>` line replaces
    for line in text.splitlines():
        word, _, rest = line.partition("\t")
        cols = rest.split("\t")
        if word == "path":
            path = rest
        elif word == "mod":
            main_module, main_version = cols[0], cols[1] if len(cols) > 1 else ""
            last_dep = None
        elif word == "dep":
            last_dep = cols[0]
            deps[last_dep] = cols[1] if len(cols) > 1 else ""
        elif word == "=>" and last_dep is not None:
            new_version = cols[1] if len(cols) > 1 else ""
            deps[last_dep] = new_version or cols[0]
        elif word == "build":
            kv = _setting(rest)
            if kv:
                settings[kv[0]] = kv[1]
    return GoBuildInfo(go_version=go_version, path=path, main_module=main_module, main_version=main_version,
                       deps=deps, settings=settings, modinfo=text)


# ---------------------------------------------------------------------------------------------- judging

@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    message: str


@dataclass(frozen=True)
class Policy:
    runtime: str = "provided.al2023"
    allow_custom_runtime_client: bool = False

    def __post_init__(self) -> None:
        if self.runtime not in limits.RUNTIME_GLIBC:
            raise UsageError(f"runtime {self.runtime!r} cannot be verified against",
                             "use " + " or ".join(limits.RUNTIME_GLIBC))

    @property
    def glibc(self) -> tuple[int, int]:
        return limits.RUNTIME_GLIBC[self.runtime]


def _dotted(version: Iterable[int]) -> str:
    return ".".join(map(str, version))


def _semver(version: str) -> tuple[int, int, int] | None:
    m = re.match(r"v(\d+)\.(\d+)\.(\d+)", version)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def _describe_elf(r: BinaryReport) -> str:
    arch = {"x86-64": "x86-64", "arm": "32-bit ARM", "x86": "32-bit x86"}.get(r.arch or "", r.arch or "?")
    parts = [] if arch.startswith("32-bit") or r.elf_class == 64 else [f"{r.elf_class}-bit"]
    if r.endianness == "big":
        parts.append("big-endian")
    return " ".join([*parts, arch, "ELF"])


def _one_line(text: str) -> str:
    """Names and values read from the file (a GOOS, a library name) may hold line breaks or terminal escapes
    in a damaged or forged binary: shown escaped, so every message stays one printable line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _finding(check: str, severity: Severity, what: str, fix: str) -> Finding:
    """Every message is the problem, then what to do about it."""
    return Finding(check, severity, _one_line(f"{what}; {fix}"))


def _check_elf(r: BinaryReport, policy: Policy) -> Iterator[Finding]:
    if (r.elf_class, r.endianness, r.arch) != (64, "little", "aarch64"):
        goarch = r.go.settings.get("GOARCH") if r.go else None
        built = f" (built with GOARCH={goarch})" if goarch else ""
        desc = _describe_elf(r)
        article = "an" if desc[0] in "aeiox" else "a"
        yield _finding("arch", "error",
                       f"{r.name} is {article} {desc}{built}, not a 64-bit little-endian arm64 "
                       "executable: Lambda's arm64 runtime would fail with `exec format error`", _REBUILD)
    if r.elf_type not in ("EXEC", "DYN"):
        yield _finding("arch", "error",
                       f"{r.name} is an ELF file of type {r.elf_type}, not an executable: Lambda cannot "
                       "run it",
                       "build a program (package main) with plain `go build`")
    elif r.elf_type == "DYN" and r.interpreter is None and not r.entry:
        # PIEs (static or not) are ET_DYN too but have an entry point; a shared library has neither that nor
        # a loader, so the kernel would jump to the first byte of the mapping and the process dies at once.
        yield _finding("arch", "error",
                       f"{r.name} is a shared library, not an executable: it has no entry point, so "
                       "Lambda would crash it the moment it starts",
                       "build the program itself (package main, without -buildmode=c-shared or plugin)")
    if r.static:
        return
    if r.interpreter is not None and r.interpreter != LOADER:
        yield _finding("interpreter", "error",
                       f"{r.name} asks for the dynamic loader {r.interpreter}, which Lambda's arm64 runtimes "
                       "do not have: it would fail with `no such file or directory`",
                       f"link it for {LOADER} (CC=aarch64-linux-gnu-gcc) or build it with CGO_ENABLED=0")
    too_new = [v for v in r.glibc_required if _glibc_key(v) > policy.glibc]
    if too_new:
        have = _dotted(policy.glibc)
        al2023 = limits.RUNTIME_GLIBC["provided.al2023"]
        move = (f", or deploy it on provided.al2023 (glibc {_dotted(al2023)})"
                if policy.runtime != "provided.al2023" and max(map(_glibc_key, too_new)) <= al2023 else "")
        yield _finding("glibc", "error",
                       f"{r.name} needs {', '.join(too_new)} but {policy.runtime} has glibc {have}: it would "
                       f"fail at start with `{too_new[-1]} not found`",
                       f"build it with CGO_ENABLED=0, or link it against glibc {have} or older{move}")
    extra = [lib for lib in r.needed if lib not in GLIBC_LIBS]
    if extra:
        yield _finding("shared-libs", "warning",
                       f"{r.name} loads {', '.join(extra)}, which the Lambda runtime does not provide",
                       "ship them in the function zip or in a layer under /opt/lib, or build with "
                       "CGO_ENABLED=0")


def _check_go(r: BinaryReport, policy: Policy, arch_ok: bool) -> Iterator[Finding]:
    go = r.go
    if go is None:
        yield _finding("go", "warning",
                       f"{r.name} has no Go build info (not a Go program, or its toolchain left it out): "
                       "the Go checks were skipped, the ELF checks still apply",
                       "if it is Go, build it with a current `go build`")
        return
    goos, goarch = go.settings.get("GOOS"), go.settings.get("GOARCH")
    if goos is not None and goos != "linux":
        yield _finding("goos", "error", f"{r.name} was built for GOOS={goos}, and Lambda runs Linux: it "
                       "would fail with `exec format error`", _REBUILD)
    if arch_ok and goarch is not None and goarch != "arm64":
        yield _finding("goarch", "error", f"{r.name} was built with GOARCH={goarch}", _REBUILD)
    goarm64 = go.settings.get("GOARM64")
    if goarm64 is not None:
        yield from _check_goarm64(r.name, goarm64)
    version = go.deps.get(LAMBDA_GO)
    if version is None:
        custom = policy.allow_custom_runtime_client
        yield _finding("runtime-client", "warning" if custom else "error",
                       f"{r.name} does not use {LAMBDA_GO}: nothing in it answers the Lambda Runtime API, "
                       "so every invocation would time out",
                       "make sure your own client polls the Runtime API" if custom else
                       "call lambda.Start from github.com/aws/aws-lambda-go/lambda, or pass "
                       "--allow-custom-runtime-client if it has its own Runtime API client")
        return
    parsed = _semver(version)
    if parsed is not None and parsed[:2] < MIN_LAMBDA_GO:
        yield _finding("runtime-client", "error",
                       f"{r.name} uses aws-lambda-go {version}, older than v{_dotted(MIN_LAMBDA_GO)}, which "
                       "cannot run on provided.* runtimes", f"upgrade it: go get {LAMBDA_GO}@latest")
    if "lambda.norpc" not in go.settings.get("-tags", "").split(","):
        yield _finding("norpc", "warning",
                       f"{r.name} was built without -tags lambda.norpc: it carries about 2 MB of go1.x RPC "
                       "code that provided.* runtimes never use", "add -tags lambda.norpc")


def _check_goarm64(name: str, value: str) -> Iterator[Finding]:
    ceiling = limits.GOARM64_CEILING
    # The value comes from the file, which may be damaged or forged: only one with the syntax `go build`
    # accepts has a level to compare (limits' own rule, so a level `--goarm64` takes is one judged here).
    if not limits.is_goarm64(value):
        yield _finding("goarm64", "error",
                       f"GOARM64 {value!r} in the build info of {name} is not a valid level, which `go build` "
                       "never writes: the file is damaged or was altered, and nothing says which arm64 CPUs "
                       "it runs on", f"rebuild it with GOARM64 from v8.0 (the default) to v{_dotted(ceiling)}")
    elif limits.goarm64_level(value) > ceiling:
        yield _finding("goarm64", "error",
                       f"{name} was built with GOARM64={value}: Lambda may run arm64 functions on "
                       f"Graviton2 (armv{_dotted(ceiling)}), where it would die with SIGILL",
                       f"build it with GOARM64=v{_dotted(ceiling)} or lower (v8.0 is the default)")


def judge(report: BinaryReport, policy: Policy) -> list[Finding]:
    """The policy for one binary and one target runtime. Reader problems stand alone: nothing else about a
    file that cannot be read or parsed is worth saying."""
    if report.problems or not report.is_elf:
        return [Finding("read", "error", _one_line(p)) for p in report.problems]
    findings = list(_check_elf(report, policy))
    arch_ok = not any(f.check == "arch" for f in findings)
    findings += _check_go(report, policy, arch_ok)
    if report.size is not None and report.size > limits.MAX_UNZIPPED:
        findings.append(_finding(
            "size", "error", f"{report.name} is {report.size:,} bytes, above Lambda's limit of "
            f"{limits.MAX_UNZIPPED:,} bytes for a function and its layers unzipped",
            "shrink it (-ldflags='-s -w', -trimpath, fewer dependencies)"))
    return findings


@dataclass(frozen=True)
class Verdict:
    report: BinaryReport
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    @property
    def status(self) -> Literal["ok", "warnings", "failed"]:
        """The job report's `verify` field."""
        return "failed" if not self.ok else "warnings" if self.findings else "ok"

    def to_json(self) -> dict[str, Any]:
        r = self.report
        return {"path": str(r.path), "ok": self.ok, "arch": r.arch, "static": r.static,
                "glibc_required": list(r.glibc_required), "go_version": r.go_version,
                "lambda_go_version": r.lambda_go_version, "settings": dict(r.go.settings) if r.go else {},
                "findings": [{"check": f.check, "severity": f.severity, "message": f.message}
                             for f in self.findings]}


def verify_path(path: Path, policy: Policy) -> Verdict:
    report = read_binary(path)
    return Verdict(report, judge(report, policy))


# ---------------------------------------------------------------------------------------------- output

_SHOWN_SETTINGS = ("GOOS", "GOARCH", "GOARM64", "CGO_ENABLED", "-tags")


def _rows(v: Verdict) -> Iterator[tuple[str, str]]:
    r = v.report
    yield "path", str(r.path)
    if r.is_elf and not r.problems:
        linkage = "static" if r.static else f"dynamic ({r.interpreter or 'no interpreter'})"
        yield "elf", (f"ELF{r.elf_class} {r.endianness}-endian {r.arch} {r.elf_type}, {linkage}, "
                      f"{(r.size or 0) / 1e6:.1f} MB")
    if r.glibc_required:
        yield "glibc", ", ".join(r.glibc_required)
    if r.needed:
        yield "libs", ", ".join(r.needed)
    if r.go:
        lambda_go = r.lambda_go_version and f"aws-lambda-go {r.lambda_go_version}"
        yield "go", ", ".join(x for x in (r.go.go_version, r.go.path, lambda_go) if x)
        shown = [f"{k}={r.go.settings[k]}" for k in _SHOWN_SETTINGS if k in r.go.settings]
        if shown:
            yield "build", " ".join(shown)
    for f in v.findings:
        yield f.severity, f"[{f.check}] {f.message}"


def format_table(verdicts: Iterable[Verdict]) -> str:
    """The human output of `go-arm-lambda verify`: a block per binary, long messages wrapped."""
    blocks = []
    for v in verdicts:
        errors = sum(f.severity == "error" for f in v.findings)
        warnings = len(v.findings) - errors
        counts = ", ".join(f"{n} {word}{'s' if n != 1 else ''}"
                           for n, word in ((errors, "error"), (warnings, "warning")) if n)
        lines = [f"{v.report.name}  {'OK' if v.ok else 'FAILED'}" + (f" ({counts})" if counts else "")]
        for label, text in _rows(v):
            lines.append(textwrap.fill(_one_line(text), width=108, initial_indent=f"  {label:<8} ",
                                       subsequent_indent=" " * 11, break_on_hyphens=False,
                                       break_long_words=False))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)

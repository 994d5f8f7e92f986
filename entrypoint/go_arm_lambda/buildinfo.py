"""Go build info inside a binary: a port of Go's src/debug/buildinfo and of runtime/debug's module lines.

What `go version -m` prints, read from the file's bytes and its PT_LOAD segments alone: verify finds those with
pyelftools (and owns every word about a corrupt ELF), this module needs no ELF library. Bad bytes raise
`Damaged`, whose message names what is wrong; anything else escaping from here is a bug.
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

_MAGIC = b"\xff Go buildinf:"
_HEADER = 32
_ALIGN = 16
_SEARCH_LIMIT = 64 * 1024
_MAX_GO_STRING = 8 * 1024 * 1024  # a modinfo is a few KiB; a length near this is garbage, not a module list
_SENTINEL = 16  # modinfo's framing bytes at each end (cmd/go/internal/modload infoStart/infoEnd)
# Segment flags from the ELF specification (p_flags).
PF_X, PF_W = 1, 2

Image = bytes | mmap.mmap  # the whole file; slicing past its end comes back short, never raises


class Damaged(Exception):
    """The build info is there but cannot be trusted; the message is the finding."""


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


@dataclass(frozen=True)
class Load:
    """A PT_LOAD segment: the map from virtual addresses (what Go's pointers hold) to file offsets."""

    vaddr: int
    offset: int
    filesz: int
    memsz: int
    flags: int


def _read_vaddr(mm: Image, loads: Sequence[Load], addr: int, length: int) -> bytes:
    """Up to `length` bytes at a virtual address, as far as the PT_LOAD segment holding it has file bytes."""
    for load in loads:
        if load.vaddr <= addr < load.vaddr + load.filesz:
            start = load.offset + addr - load.vaddr
            return mm[start:start + min(length, load.vaddr + load.filesz - addr)]
    return b""


def _data_start(loads: Sequence[Load], section: tuple[int, int] | None) -> tuple[int, int] | None:
    """Where to look: the `.go.buildinfo` section (address, size) when the file has section headers, else
    the start of the data segment, where the linker puts the blob (Go's DataStart for ELF)."""
    if section is not None:
        return section
    for load in loads:
        if load.flags & (PF_W | PF_X) == PF_W:
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


def read(mm: Image, loads: Sequence[Load], section: tuple[int, int] | None) -> GoBuildInfo | None:
    """The build info of a Go binary, None when it has none (not Go, or a toolchain that left it out).

    `section` is the `.go.buildinfo` section's (address, size), None when the file has no section headers.
    """
    window = _data_start(loads, section)
    if window is None:
        return None
    addr, length = window
    start = -(-addr // _ALIGN) * _ALIGN
    data = _read_vaddr(mm, loads, start, min(length - (start - addr), _SEARCH_LIMIT))
    at = data.find(_MAGIC)
    while at >= 0 and at % _ALIGN:
        at = data.find(_MAGIC, at + 1)
    if at < 0:
        return None
    header = data[at:at + _HEADER]
    if len(header) < _HEADER:
        raise Damaged("corrupt Go build info: the header is cut short")
    if header[15] & 2:  # Go >= 1.18: the two strings follow the header inline
        pos = start + at + _HEADER
        version, pos = _inline_string(mm, loads, pos)
        modinfo, _ = _inline_string(mm, loads, pos)
    else:
        version, modinfo = _pointer_strings(mm, loads, header)
    if not version:
        raise Damaged("corrupt Go build info: no Go version in it")
    # The sentinels are not UTF-8, so they go before decoding; Go drops a modinfo without its framing.
    framed = len(modinfo) >= 2 * _SENTINEL + 1 and modinfo[-_SENTINEL - 1] == ord("\n")
    text = modinfo[_SENTINEL:-_SENTINEL].decode("utf-8", "replace") if framed else ""
    return parse_modinfo(version.decode("utf-8", "replace"), text)


def _inline_string(mm: Image, loads: Sequence[Load], addr: int) -> tuple[bytes, int]:
    length, used = _uvarint(_read_vaddr(mm, loads, addr, 10))
    if not used or length > _MAX_GO_STRING:
        raise Damaged("corrupt Go build info: a string length is unreadable")
    data = _read_vaddr(mm, loads, addr + used, length)
    if len(data) < length:
        raise Damaged("corrupt Go build info: a string runs past its segment")
    return data, addr + used + length


def _pointer_strings(mm: Image, loads: Sequence[Load], header: bytes) -> tuple[bytes, bytes]:
    """Before Go 1.18 the header holds the addresses of two Go string headers {data, len}."""
    ptr_size = header[14]
    if ptr_size not in (4, 8):
        raise Damaged(f"corrupt Go build info: pointer size {ptr_size}")
    order: Literal["little", "big"] = "big" if header[15] & 1 else "little"

    def word(b: bytes) -> int:
        return int.from_bytes(b[:ptr_size], order)

    def go_string(addr: int) -> bytes:
        hdr = _read_vaddr(mm, loads, addr, 2 * ptr_size)
        if len(hdr) < 2 * ptr_size:
            raise Damaged("corrupt Go build info: a string header points outside the file")
        data_addr, length = word(hdr), word(hdr[ptr_size:])
        data = _read_vaddr(mm, loads, data_addr, min(length, _MAX_GO_STRING))
        if len(data) < length:
            raise Damaged("corrupt Go build info: a string points outside the file")
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
        code = int(e[1:], 16) if e[0] in "xuU" else int(e, 8)
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


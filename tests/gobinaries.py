"""The binaries the reader tests read (buildinfo, binary, verify): real arm64 Go builds in the variants verify
judges, a cgo build against the cross toolchain's glibc, and a hand-made ELF in Go < 1.18's build-info layout.

A plugin (conftest's pytest_plugins), so every test module that reads binaries shares one set of builds.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from conftest import FIXTURES, FUNCTIONS_MODULE, GoBuilder, require_tool

CROSS_CC = "aarch64-linux-gnu-gcc"


@pytest.fixture(scope="session")
def answer(fixture_bins: Path) -> Path:
    return fixture_bins / "answer"


@pytest.fixture(scope="session")
def answer_rpc(gobuild: GoBuilder) -> Path:
    return gobuild.build(FUNCTIONS_MODULE, ["./cmd/answer"], tags="") / "answer"


@pytest.fixture(scope="session")
def answer_amd64(gobuild: GoBuilder) -> Path:
    return gobuild.build(FUNCTIONS_MODULE, ["./cmd/answer"], goarch="amd64") / "answer"


@pytest.fixture(scope="session")
def answer_v9(gobuild: GoBuilder) -> Path:
    # Unstripped, so `go version -m` is also compared on a binary with symbols and no -ldflags setting.
    out = gobuild.build(FUNCTIONS_MODULE, ["./cmd/answer"], ldflags="", extra_env={"GOARM64": "v9.0"})
    return out / "answer"


@pytest.fixture(scope="session")
def oldlambda(gobuild: GoBuilder) -> Path:
    return gobuild.build(FIXTURES / "oldlambda", ["."]) / "oldlambda"


_CGO_MAIN = """package main

/*
#include <stdio.h>
static void hello(void) { puts("hello from C"); }
*/
import "C"

import "example.com/helper"

func main() { C.hello(); helper.Hello() }
"""


@pytest.fixture(scope="session")
def cgo_bin(gobuild: GoBuilder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cgo against the cross toolchain's glibc (2.36 on Debian 12): pthread_create et al. need GLIBC_2.34.
    Its local `replace` also puts a `=>` line into the build info."""
    require_tool(CROSS_CC)
    module = tmp_path_factory.mktemp("cgo")
    (module / "go.mod").write_text("module example.com/cgo\n\ngo 1.26\n\nrequire example.com/helper v0.0.0\n"
                                   "\nreplace example.com/helper => ./helper\n")
    (module / "main.go").write_text(_CGO_MAIN)
    (module / "helper").mkdir()
    (module / "helper" / "go.mod").write_text("module example.com/helper\n\ngo 1.26\n")
    (module / "helper" / "helper.go").write_text('package helper\n\nfunc Hello() { println("hi") }\n')
    return gobuild.build(module, ["."], cgo=True, extra_env={"CC": CROSS_CC}) / "cgo"


# --- a hand-made Go < 1.18 binary ---------------------------------------------------------------------------

INFO_START = bytes.fromhex("3077af0c9274080241e1c107e6d618e6")  # cmd/go's modinfo sentinels
INFO_END = bytes.fromhex("f932433186182072008242104116d8f2")
OLD_MODINFO = ("path\texample.com/old\nmod\texample.com/old\t(devel)\t\n"
               "dep\tgithub.com/aws/aws-lambda-go\tv1.17.0\th1:x=\n")
BASE = 0x10000


def pointer_format_elf(*, bits: int = 64, order: str = "<", sections: bool = True,
                       modinfo_text: str = OLD_MODINFO) -> bytes:
    """An executable laid out the way Go < 1.18 wrote build info: one RW PT_LOAD holding, at a 16-aligned
    offset, the 32-byte header whose two pointers lead to Go string headers {data, len}, then the strings.
    With `sections`, a .go.buildinfo section names the header; without, the PT_LOAD fallback must find it."""
    w = "Q" if bits == 64 else "I"
    ptr = bits // 8
    ehsize, phsize, shsize = (64, 56, 64) if bits == 64 else (52, 32, 40)
    info = 0x100
    version, modinfo = b"go1.16.15", INFO_START + modinfo_text.encode() + INFO_END
    headers = info + 32  # the two string headers
    strings = headers + 4 * ptr
    blob = bytearray(info)
    blob += (b"\xff Go buildinf:" + bytes([ptr, 1 if order == ">" else 0])
             + struct.pack(f"{order}{w}{w}", BASE + headers, BASE + headers + 2 * ptr)).ljust(32, b"\0")
    blob += struct.pack(f"{order}{w}{w}{w}{w}", BASE + strings, len(version),
                        BASE + strings + len(version), len(modinfo))
    blob += version + modinfo
    load_size = len(blob)

    shoff = shnum = shstrndx = 0
    if sections:
        names = b"\0.go.buildinfo\0.shstrtab\0"
        names_at = len(blob)
        blob += names
        blob += bytes(-len(blob) % 8)
        shoff, shnum, shstrndx = len(blob), 3, 2
        for name, kind, flags, addr, off, size in ((0, 0, 0, 0, 0, 0),
                                                   (1, 1, 3, BASE + info, info, 32),  # PROGBITS, WA
                                                   (15, 3, 0, 0, names_at, len(names))):  # STRTAB
            blob += struct.pack(f"{order}II{w}{w}{w}{w}II{w}{w}", name, kind, flags, addr, off, size,
                                0, 0, 1, 0)

    ident = b"\x7fELF" + bytes([1 if bits == 32 else 2, 2 if order == ">" else 1, 1]) + bytes(9)
    machine = 183 if bits == 64 and order == "<" else 20  # AArch64; PPC for the other layouts
    struct.pack_into(f"{order}16sHHI{w}{w}{w}IHHHHHH", blob, 0, ident, 2, machine, 1, BASE, ehsize, shoff, 0,
                     ehsize, phsize, 1, shsize, shnum, shstrndx)
    if bits == 64:  # PT_LOAD, PF_R|PF_W
        struct.pack_into(f"{order}IIQQQQQQ", blob, ehsize, 1, 6, 0, BASE, BASE, load_size, load_size, 0x1000)
    else:
        struct.pack_into(f"{order}IIIIIIII", blob, ehsize, 1, 0, BASE, BASE, load_size, load_size, 6, 0x1000)
    return bytes(blob)

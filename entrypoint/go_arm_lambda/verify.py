"""Check a binary before it ships: would Lambda's arm64 provided.* runtimes start it, and would it answer?

Pure: binary.py reads the file into a `BinaryReport` (never running it); `judge` holds the policy: each
`Finding` says what is wrong and what to do, in the words Lambda would otherwise use in production
(`exec format error`, `GLIBC_2.xx not found`, SIGILL, a function that never answers).
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from go_arm_lambda import limits
from go_arm_lambda.binary import LAMBDA_GO, REBUILD, BinaryReport, GoBuildInfo, glibc_key, read_binary
from go_arm_lambda.config import say
from go_arm_lambda.errors import UsageError, one_line

Severity = Literal["error", "warning"]

MIN_LAMBDA_GO = (1, 18)  # older releases have no Runtime API client, only go1.x's RPC mode
LOADER = "/lib/ld-linux-aarch64.so.1"
# Parts of glibc itself: present on every provided.* image. libresolv is glibc too.
GLIBC_LIBS = frozenset({"libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1",
                        "libresolv.so.2", "ld-linux-aarch64.so.1"})


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
    m = re.match(r"v(\d+)\.(\d+)\.(\d+)", version, re.ASCII)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def _describe_elf(r: BinaryReport) -> str:
    arch = {"x86-64": "x86-64", "arm": "32-bit ARM", "x86": "32-bit x86"}.get(r.arch or "", r.arch or "?")
    parts = [] if arch.startswith("32-bit") or r.elf_class == 64 else [f"{r.elf_class}-bit"]
    if r.endianness == "big":
        parts.append("big-endian")
    return " ".join([*parts, arch, "ELF"])


def _finding(check: str, severity: Severity, what: str, fix: str) -> Finding:
    """Every message is the problem, then what to do about it."""
    return Finding(check, severity, one_line(f"{what}; {fix}"))


def _check_elf(r: BinaryReport, policy: Policy) -> Iterator[Finding]:
    if (r.elf_class, r.endianness, r.arch) != (64, "little", "aarch64"):
        goarch = r.go.settings.get("GOARCH") if r.go else None
        built = f" (built with GOARCH={goarch})" if goarch else ""
        desc = _describe_elf(r)
        article = "an" if desc[0] in "aeiox" else "a"
        yield _finding("arch", "error",
                       f"{r.name} is {article} {desc}{built}, not a 64-bit little-endian arm64 "
                       "executable: Lambda's arm64 runtime would fail with `exec format error`", REBUILD)
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
    too_new = [v for v in r.glibc_required if glibc_key(v) > policy.glibc]
    if too_new:
        have = _dotted(policy.glibc)
        al2023 = limits.RUNTIME_GLIBC["provided.al2023"]
        move = (f", or deploy it on provided.al2023 (glibc {_dotted(al2023)})"
                if policy.runtime != "provided.al2023" and max(map(glibc_key, too_new)) <= al2023 else "")
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
    allow = say("allow_custom_runtime_client", "true")
    if go is None:
        # Without build info nothing shows an aws-lambda-go inside: unless the user vouches for its own Runtime
        # API client, it is as likely a stray library (libc.so.6) as a function, and Lambda would time out on it.
        if policy.allow_custom_runtime_client:
            yield _finding("go", "warning", f"{r.name} has no Go build info: the Go checks were skipped, the ELF "
                           "checks still apply", "make sure its own client polls the Runtime API")
        else:
            yield _finding("go", "error",
                           f"{r.name} is not a Go program with build info, so nothing shows it answers the Lambda "
                           f"Runtime API ({LAMBDA_GO}): every invocation would time out",
                           f"build the function with a current `go build`, or give {allow} if it has its own "
                           "Runtime API client")
        return
    goos, goarch = go.settings.get("GOOS"), go.settings.get("GOARCH")
    if goos is not None and goos != "linux":
        yield _finding("goos", "error", f"{r.name} was built for GOOS={goos}, and Lambda runs Linux: it "
                       "would fail with `exec format error`", REBUILD)
    if arch_ok and goarch is not None and goarch != "arm64":
        yield _finding("goarch", "error", f"{r.name} was built with GOARCH={goarch}", REBUILD)
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
                       "call lambda.Start from github.com/aws/aws-lambda-go/lambda, or give "
                       f"{allow} if it has its own Runtime API client")
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
        return [Finding("read", "error", one_line(p)) for p in report.problems]
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

    def to_record(self) -> dict[str, Any]:
        """All of the verdict as JSON values, for the content cache; the binary's path is not part of it."""
        report = dataclasses.asdict(self.report)
        del report["path"]
        return {"report": report, "findings": [dataclasses.asdict(f) for f in self.findings]}

    @classmethod
    def from_record(cls, record: dict[str, Any], path: Path) -> Verdict:
        """The verdict `to_record` stored, for the same bytes now at `path`. A record of another shape raises
        (TypeError, KeyError): the cache then verifies again."""
        fields = dict(record["report"])
        go = fields.pop("go")
        report = BinaryReport(path=path, **fields, go=None if go is None else GoBuildInfo(**go))
        return cls(report, [Finding(**f) for f in record["findings"]])


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
            lines.append(textwrap.fill(one_line(text), width=108, initial_indent=f"  {label:<8} ",
                                       subsequent_indent=" " * 11, break_on_hyphens=False,
                                       break_long_words=False))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)

"""Cross-compile Go Lambda functions for linux/arm64: one `go build` per Go module, modules concurrently.

One invocation per module lets Go share and parallelize the work of all its functions (compile each dependency
once, link concurrently); that is what makes this faster than the one-`go build`-per-function approach of SAM and
CDK. Everything that can be checked without compiling is checked before the first compiler starts.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from go_arm_lambda import proc, progress, toolchain
from go_arm_lambda.config import Config, FunctionSpec, say
from go_arm_lambda.errors import BuildError, Location, UsageError

BOOTSTRAP = "bootstrap"
# `-s -w` drops the symbol table and DWARF (a third of the size, no effect on panics' stack traces);
# `-buildid=` is not needed: with -trimpath Go's content-based build ID is already reproducible.
BASE_LDFLAGS = "-s -w"
BASE_TAGS = ("lambda.norpc",)  # drops aws-lambda-go's go1.x RPC mode, about 2 MB nobody on provided.* runs

_PACKAGE_CLAUSE = re.compile(rb"^\s*package\s+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)
_BUILD_IGNORE = re.compile(rb"^//go:build\s+ignore\s*$", re.MULTILINE)
_MODULE_LINE = re.compile(r"^module\s+\"?([^\s\"]+)", re.MULTILINE | re.ASCII)
_MAJOR_VERSION = re.compile(r"v([2-9]|[1-9][0-9]+)", re.ASCII)
_DIAGNOSTIC = re.compile(r"^(?P<file>[^\s:][^:]*\.go):(?P<line>\d+)(?::(?P<col>\d+))?: (?P<msg>.+)$", re.ASCII)


@dataclass(frozen=True)
class BuiltFunction:
    spec: FunctionSpec
    handler: str  # the file name inside the zip, and the function's Handler
    binary: Path
    package_dir: Path

    def main_location(self, message: str) -> Location:
        """Where to pin a finding about this binary (annotations need a file): its `func main`, in main.go or
        the first file that has one."""
        files = sorted(self.package_dir.glob("*.go"), key=lambda f: (f.name != "main.go", f.name))
        for f in files:
            for number, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if line.startswith("func main()"):
                    return Location(str(f), number, message=message)
        return Location(str(files[0] if files else self.package_dir), message=message)


@dataclass(frozen=True)
class _Target:
    spec: FunctionSpec
    package_dir: Path
    module_dir: Path
    module_path: str

    @property
    def binary_name(self) -> str:
        """The name go build gives the binary: the import path's last element, a /vN suffix skipped."""
        rel = self.package_dir.relative_to(self.module_dir).as_posix()
        elems = (self.module_path if rel == "." else f"{self.module_path}/{rel}").split("/")
        if len(elems) > 1 and _MAJOR_VERSION.fullmatch(elems[-1]):
            return elems[-2]
        return elems[-1]

    @property
    def relative_package(self) -> str:
        rel = self.package_dir.relative_to(self.module_dir).as_posix()
        return "." if rel == "." else f"./{rel}"


def build_flags(cfg: Config) -> list[str]:
    """The flags that make a build reproducible: same source, same bytes, on every run and every commit.

    -buildvcs=false: VCS stamping would put the commit (and a dirty flag) into the binary, so an unchanged
    function would get a new CodeSha256 on every commit and be redeployed for nothing; it also fails in
    containers whose workspace git calls "dubious ownership". The commit goes into the published version's
    description instead.
    """
    tags = ",".join(dict.fromkeys([*BASE_TAGS, *cfg.tags]))
    ldflags = f"{BASE_LDFLAGS} {cfg.ldflags}".strip()
    return ["-trimpath", "-buildvcs=false", "-tags", tags, "-ldflags", ldflags]


def _find_module(package_dir: Path, spec: FunctionSpec) -> tuple[Path, str]:
    """The module directory and module path (from go.mod's module line) that hold the package."""
    for d in (package_dir, *package_dir.parents):
        if (d / "go.mod").is_file():
            m = _MODULE_LINE.search((d / "go.mod").read_text(encoding="utf-8", errors="replace"))
            if m is None:
                raise UsageError(f"{d / 'go.mod'} has no module line", "add one, e.g. `module example.com/orders`")
            return d, m.group(1)
    raise UsageError(f"function {spec.short_name}: {spec.package} is not inside a Go module (no go.mod above it)",
                     f"run `go mod init` in the module root, or fix {say('source')}")


def _package_name(package_dir: Path) -> str | None:
    """The package clause of the directory's non-test Go files, read without invoking go (it is much faster)."""
    for f in sorted(package_dir.glob("*.go")):
        if f.name.endswith("_test.go"):
            continue
        head = f.read_bytes()[:8192]
        if _BUILD_IGNORE.search(head):
            continue
        m = _PACKAGE_CLAUSE.search(head)
        if m:
            return m.group(1).decode()
    return None


def resolve(cfg: Config) -> list[_Target]:
    """Turn NAME=PACKAGE pairs into build targets, or fail before anything is compiled."""
    if not cfg.functions:
        raise UsageError("no functions to build",
                         f"give {say('functions', 'orders=./cmd/orders')} (NAME=PACKAGE), or list them in "
                         "go-arm-lambda.toml")
    source = cfg.source.resolve()
    if not source.is_dir():
        state = "is not a directory" if source.exists() else "does not exist"
        raise UsageError(f"source directory {cfg.source} {state}", f"fix {say('source')}")
    targets: list[_Target] = []
    for spec in cfg.functions:
        if not spec.package.startswith("."):
            raise UsageError(f"function {spec.short_name}: package {spec.package!r} is not a relative directory",
                             f"write it relative to {cfg.source}, e.g. ./cmd/{spec.package.rsplit('/', 1)[-1]}")
        package_dir = (source / spec.package).resolve()
        if package_dir.is_file():
            raise UsageError(f"function {spec.short_name}: package {spec.package} is a file, and a package is a "
                             "directory", f"give the directory of its main package, e.g. "
                             f"{spec.short_name}={spec.package.rstrip('/').rsplit('/', 1)[0]}")
        if not package_dir.is_dir():
            raise UsageError(f"function {spec.short_name}: package {spec.package} does not exist under {cfg.source}",
                             "fix the package path in NAME=PACKAGE")
        name = _package_name(package_dir)
        if name is None:
            raise UsageError(f"function {spec.short_name}: {spec.package} has no Go files",
                             "point it at the directory of the function's main package")
        if name != "main":
            raise UsageError(f"function {spec.short_name}: {spec.package} is package {name}, not a main package",
                             "point it at a command (package main) that calls lambda.Start")
        targets.append(_Target(spec, package_dir, *_find_module(package_dir, spec)))
    if cfg.layer_mode:
        _check_clashes(targets)
    return targets


def _check_clashes(targets: Sequence[_Target]) -> None:
    """In layer mode the binary's name is the Handler, so two packages with one name would be ambiguous.

    The same package for two functions is fine (one binary, two zips). Bootstrap mode names every binary
    `bootstrap` in its zip, so there the build just keeps same-named binaries in separate directories.
    """
    by_name: dict[str, Path] = {}
    for t in targets:
        other = by_name.setdefault(t.binary_name, t.package_dir)
        if other != t.package_dir:
            raise UsageError(f"two packages would both build a binary named {t.binary_name!r}, the Handler of both "
                             f"functions: {other} and {t.package_dir}",
                             f"rename one directory, or use {say('mode', 'bootstrap')}, where every binary is named "
                             "bootstrap")


def _batches(targets: Sequence[_Target], out: Path) -> dict[tuple[Path, Path], list[_Target]]:
    """(module, output directory) -> its targets, so that no directory gets two different binaries of one name.

    Almost always that is one directory and one go build per module; only same-named packages (bootstrap mode)
    spill into out-2, out-3, ...
    """
    taken: list[dict[str, Path]] = []  # per output directory: binary name -> package
    batches: dict[tuple[Path, Path], list[_Target]] = {}
    for t in targets:
        k = next((i for i, names in enumerate(taken) if names.get(t.binary_name, t.package_dir) == t.package_dir),
                 len(taken))
        if k == len(taken):
            taken.append({})
        taken[k][t.binary_name] = t.package_dir
        directory = out if k == 0 else out.with_name(f"{out.name}-{k + 1}")
        batches.setdefault((t.module_dir, directory), []).append(t)
    return batches


def _diagnostics(stderr: str, module_dir: Path) -> list[Location]:
    """The compiler's `file:line:col: message` lines, with paths made absolute (go prints them cwd-relative)."""
    locations: list[Location] = []
    for line in stderr.splitlines():
        m = _DIAGNOSTIC.match(line.strip())
        if m:
            col = int(m.group("col")) if m.group("col") else None
            locations.append(Location(str((module_dir / m.group("file")).resolve()), int(m.group("line")), col,
                                      m.group("msg")))
        elif line.startswith("\t") and locations:  # go's continuation of the message above (e.g. "go get ...")
            last = locations[-1]
            locations[-1] = Location(last.file, last.line, last.col, f"{last.message}\n{line.strip()}")
    return locations


def build(cfg: Config, out_dir: Path) -> list[BuiltFunction]:
    """Build every function into out_dir; returns them in the order they were given."""
    targets = resolve(cfg)
    go = toolchain.find_go(cfg.go)
    for module_dir in dict.fromkeys(t.module_dir for t in targets):
        toolchain.check_module(go, module_dir / "go.mod")
    env = toolchain.build_env(goarm64=cfg.goarm64, cgo=cfg.cgo)
    flags = build_flags(cfg)
    batches = _batches(targets, out_dir.resolve())
    # Binaries from an earlier run stay: go build checks their build IDs and relinks only what changed.
    for _, directory in batches:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the output directory {directory} ({exc.strerror})",
                             f"point {say('out')} at a writable directory") from None

    def build_batch(key: tuple[Path, Path]) -> proc.Completed:
        (module_dir, directory), packages = key, list(dict.fromkeys(t.relative_package for t in batches[key]))
        argv = [go.path, "build", *flags, "-o", f"{directory}/", *packages]
        progress.note(command_line(argv, module_dir, env))
        with progress.task(f"go build in {_shown(module_dir, cfg.source.resolve())}") as t:
            done = proc.run(argv, cwd=module_dir, env=env)
            t.detail = f"{len(packages)} package{'s' if len(packages) != 1 else ''}" + ("" if done.ok else ", failed")
        return done

    progress.expect(len(batches))
    with ThreadPoolExecutor(max_workers=max(1, min(len(batches), cfg.concurrency))) as pool:
        results = dict(zip(batches, pool.map(build_batch, batches), strict=True))

    failed = {module: r for (module, _), r in results.items() if not r.ok}
    if failed:
        source = cfg.source.resolve()
        locations = [loc for m, r in failed.items() for loc in _diagnostics(r.stderr, m)]
        names = ", ".join(_shown(m, source) for m in failed)
        counted = f" ({len(locations)} error{'s' if len(locations) != 1 else ''})" if locations else ""
        printed = "\n".join(r.stderr.rstrip() for r in failed.values())
        needs_cgo = "build constraints exclude" in printed
        hint = f" (a package that needs cgo builds only with {say('cgo', 'true')})" if needs_cgo else ""
        raise BuildError(f"go build failed in {names}{counted}", f"fix what go printed above{hint}",
                         locations=locations, details=printed)
    where = {id(t): directory for (_, directory), ts in batches.items() for t in ts}
    return [BuiltFunction(t.spec, BOOTSTRAP if cfg.mode == "bootstrap" else t.binary_name,
                          where[id(t)] / t.binary_name, t.package_dir) for t in targets]


def command_line(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> str:
    """The command as run, for the log and to paste into a shell: its directory and the variables it sets."""
    changed = {k: v for k, v in env.items() if os.environ.get(k) != v}
    assignments = [f"{k}={shlex.quote(v)}" for k, v in sorted(changed.items())]
    return f"$ cd {shlex.quote(str(cwd))} && " + " ".join([*assignments, shlex.join(argv)])


def _shown(path: Path, source: Path) -> str:
    try:
        rel = path.relative_to(source).as_posix()
    except ValueError:
        return str(path)
    return "the module at " + (rel if rel != "." else str(source.name or source))


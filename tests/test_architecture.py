"""ARCHITECTURE.md's module table and import contracts, checked against the code's real imports, both ways.

`check(package_dir, architecture_text)` reads every module's imports from its syntax tree (module level, inside
functions, under TYPE_CHECKING) and returns one line per broken contract, so the same checker runs on the real
package and on temporary copies with a violation injected: each contract is shown to fail when it is broken.
"""

from __future__ import annotations

import ast
import functools
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "entrypoint" / "go_arm_lambda"
ARCHITECTURE = ROOT / "ARCHITECTURE.md"

# The contracts. ARCHITECTURE.md states each in the words `contract_lines()` renders, and the table says per
# module what these constrain: its layer and every module, distribution and guarded stdlib module it imports.
LAYERS = ("cli", "pipeline", "stage", "wrapper", "model", "errors")  # top to bottom
ONLY = {"boto3": "aws", "botocore": "aws", "PyGithub": "ghclient", "subprocess": "proc"}
NEVER_LOADED = ("boto3", "botocore")
NEVER_LOAD_THEM = ("build", "verify", "package", "smoke")
# Standard-library modules that start processes: as guarded as subprocess itself.
PROCESS_MODULES = ("subprocess", "multiprocessing", "pty")
PROCESS_CALLS = re.compile(r"system|popen|exec\w*|spawn\w*|posix_spawn\w*|fork\w*")
NOT_IN_TABLE = ("__init__", "__main__")  # the version string and `python -m go_arm_lambda`: no logic of their own
_DISTRIBUTIONS = packages_distributions()  # import name -> the distributions that install it ("elftools": pyelftools)


def contract_lines() -> list[str]:
    """The contracts in ARCHITECTURE.md's words; the document must say each exactly so."""
    only: dict[str, list[str]] = {}
    for dist, module in ONLY.items():
        only.setdefault(module, []).append(dist)
    return [
        f"- Layers, top to bottom: {' → '.join(LAYERS)}. A module imports only from its own layer or a lower "
        "one, and no module-level imports go round in a cycle.",
        *(f"- Only `{module}` imports {' and '.join(dists)}." for module, dists in only.items()
          if module != ONLY["subprocess"]),
        f"- Only `{ONLY['subprocess']}` starts processes: no other module imports {', '.join(PROCESS_MODULES[:-1])} "
        f"or {PROCESS_MODULES[-1]}, or calls `os.system`, `os.popen`, `os.exec*`, `os.spawn*`, `os.posix_spawn*` or "
        "`os.fork*`.",
        f"- {', '.join(f'`{m}`' for m in NEVER_LOAD_THEM[:-1])} and `{NEVER_LOAD_THEM[-1]}` never load "
        f"{' or '.join(NEVER_LOADED)}, not even through another module at import time.",
    ]


@dataclass(frozen=True)
class Row:
    module: str
    layer: str
    may_import: frozenset[str]


@dataclass(frozen=True)
class Import:
    target: str  # a module of ours ("limits"), a distribution ("boto3"), a guarded stdlib module ("subprocess")
    line: int
    at_import_time: bool  # module level and not under TYPE_CHECKING: runs whenever the module is imported


def parse_table(text: str) -> list[Row]:
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if re.match(r"\|\s*module\s*\|\s*layer\s*\|", ln)), None)
    assert start is not None, "ARCHITECTURE.md has no `| module | layer | owns | may import |` table"
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        module = cells[0].strip("`").removesuffix(".py")
        names = {n.strip().strip("`") for n in cells[-1].split(",")} - {"–", "-", ""}
        rows.append(Row(module, cells[1], frozenset(names)))
    return rows


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    """Every import and process start in one module, with whether it runs at import time."""

    def __init__(self, package: str, modules: set[str]) -> None:
        self.package, self.modules = package, modules
        self.found: list[Import] = []
        self.unknown: list[str] = []  # imports the checker cannot place: a violation of their own
        self.process_calls: list[tuple[str, int]] = []
        self._lazy = 0

    def _add(self, target: str, node: ast.stmt) -> None:
        self.found.append(Import(target, node.lineno, self._lazy == 0))

    def _add_absolute(self, name: str, node: ast.stmt) -> None:
        top = name.split(".")[0]
        if top == self.package:
            sub = name.split(".")[1] if "." in name else ""
            if sub in self.modules:
                self._add(sub, node)
        elif top in PROCESS_MODULES:
            self._add(top, node)
        elif top in sys.stdlib_module_names or top == "__future__":
            return
        elif top in _DISTRIBUTIONS:
            self._add(_DISTRIBUTIONS[top][0], node)
        else:
            self.unknown.append(f"{name} (line {node.lineno})")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add_absolute(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:  # relative: inside the package
            base = f"{self.package}.{base}" if base else self.package
        if base == self.package:  # `from go_arm_lambda import limits, __version__`
            for alias in node.names:
                if alias.name in self.modules:
                    self._add(alias.name, node)
            return
        if base == "os":
            self.process_calls += [(f"os.{a.name}", node.lineno) for a in node.names
                                   if PROCESS_CALLS.fullmatch(a.name)]
        self._add_absolute(base, node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name) and node.value.id == "os" and PROCESS_CALLS.fullmatch(node.attr):
            self.process_calls.append((f"os.{node.attr}", node.lineno))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name in ("import_module", "__import__"):
            self.unknown.append(f"a dynamic import, which no checker can follow (line {node.lineno})")
        self.generic_visit(node)

    def _lazily(self, node: ast.AST) -> None:
        self._lazy += 1
        self.generic_visit(node)
        self._lazy -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _lazily

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self._lazily(ast.Module(body=node.body, type_ignores=[]))
        for stmt in node.orelse:
            self.visit(stmt)


def read_imports(package_dir: Path) -> tuple[dict[str, _Imports], list[str]]:
    modules = {p.stem for p in package_dir.glob("*.py")}
    found = {}
    for name in sorted(modules):
        visitor = _Imports(package_dir.name, modules)
        visitor.visit(ast.parse((package_dir / f"{name}.py").read_text(encoding="utf-8")))
        found[name] = visitor
    return found, sorted(modules - set(NOT_IN_TABLE))


def _import_time_path(start: str, imports: dict[str, _Imports], targets: tuple[str, ...]) -> list[str] | None:
    """The chain of import-time imports from `start` to one of `targets`, breadth first (the shortest)."""
    paths = {start: [start]}
    queue = [start]
    while queue:
        here = queue.pop(0)
        for imp in imports[here].found:
            if not imp.at_import_time:
                continue
            if imp.target in targets:
                return [*paths[here], imp.target]
            if imp.target in imports and imp.target not in paths:
                paths[imp.target] = [*paths[here], imp.target]
                queue.append(imp.target)
    return None


def _cycles(imports: dict[str, _Imports]) -> Iterator[list[str]]:
    edges = {m: sorted({i.target for i in v.found if i.at_import_time and i.target in imports})
             for m, v in imports.items()}
    done: set[str] = set()

    def walk(node: str, stack: list[str]) -> Iterator[list[str]]:
        if node in stack:
            yield [*stack[stack.index(node):], node]
            return
        if node in done:
            return
        for nxt in edges[node]:
            yield from walk(nxt, [*stack, node])
        done.add(node)

    seen: set[tuple[str, ...]] = set()
    for module in sorted(edges):
        for cycle in walk(module, []):
            at = cycle.index(min(cycle[:-1]))  # each cycle once, from its first name in sorted order
            canonical = (*cycle[at:-1], *cycle[:at], cycle[at])
            if canonical not in seen:
                seen.add(canonical)
                yield list(canonical)


def _stage_order(pipeline: Path, modules: set[str]) -> list[str]:
    """The stage modules in the order pipeline.py opens their `with stage("...")` blocks."""
    order = []
    for node in ast.walk(ast.parse(pipeline.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "stage" and node.args
                and isinstance(node.args[0], ast.Constant) and node.args[0].value in modules):
            order.append((node.lineno, node.args[0].value))
    return [name for _, name in sorted(order)]


def check(package_dir: Path, architecture: str) -> list[str]:
    """One line per broken contract; [] when the code and ARCHITECTURE.md agree on every one."""
    problems = [f"[contracts] ARCHITECTURE.md does not say: {line}" for line in contract_lines()
                if line not in architecture]
    imports, modules = read_imports(package_dir)
    rows = parse_table(architecture)
    table = {r.module: r for r in rows}

    # The table, both ways.
    problems += [f"[table] {m}.py has no row in ARCHITECTURE.md's table" for m in modules if m not in table]
    problems += [f"[table] the row {r.module} names no module in {package_dir.name}" for r in rows
                 if r.module not in modules]
    problems += [f"[table] {r.module}'s layer {r.layer!r} is none of {', '.join(LAYERS)}" for r in rows
                 if r.layer not in LAYERS]
    for m in modules:
        problems += [f"[table] {m} imports {u}, which is neither the standard library, this package nor an "
                     "installed distribution" for u in imports[m].unknown]
        if m not in table:
            continue
        real: dict[str, int] = {}
        for imp in imports[m].found:
            real.setdefault(imp.target, imp.line)
        listed = table[m].may_import
        problems += [f"[table] {m} imports {t} (line {line}), which ARCHITECTURE.md does not list"
                     for t, line in sorted(real.items()) if t not in listed]
        problems += [f"[table] {m} lists {t}, which it never imports" for t in sorted(listed - set(real))]

    # Rows run from the top layer down, and the stages in the order the job runs them.
    ranks = [LAYERS.index(r.layer) for r in rows if r.layer in LAYERS]
    if ranks != sorted(ranks):
        problems.append(f"[order] the table's rows are not grouped by layer from {LAYERS[0]} down to {LAYERS[-1]}")
    stages = [r.module for r in rows if r.layer == "stage"]
    job = _stage_order(package_dir / "pipeline.py", set(stages))
    if [s for s in stages if s in job] != job:
        problems.append(f"[order] the stage rows are not in the order pipeline.py runs them ({' -> '.join(job)})")

    # Layers: never upwards; no cycles at import time.
    for m in modules:
        if m not in table or table[m].layer not in LAYERS:
            continue
        rank = LAYERS.index(table[m].layer)
        for imp in imports[m].found:
            up = table.get(imp.target)
            if up is not None and up.layer in LAYERS and LAYERS.index(up.layer) < rank:
                problems.append(f"[layers] {m} ({table[m].layer}) imports {imp.target} ({up.layer}) at line "
                                f"{imp.line}: a higher layer")
    problems += [f"[layers] a cycle at import time: {' -> '.join(c)}" for c in _cycles(imports)]

    # Only one module imports each guarded dependency, and only proc starts processes.
    for m in sorted(imports):
        for imp in imports[m].found:
            owner = ONLY.get(imp.target) or (ONLY["subprocess"] if imp.target in PROCESS_MODULES else None)
            if owner is not None and m != owner:
                problems.append(f"[only {owner} imports {imp.target}] {m} imports it at line {imp.line}")
        if m != ONLY["subprocess"]:
            problems += [f"[only {ONLY['subprocess']} starts processes] {m} calls {call} at line {line}"
                         for call, line in imports[m].process_calls]

    # The boto3-free stages, through any chain of imports that runs when they are imported.
    for m in NEVER_LOAD_THEM:
        if m in imports and (path := _import_time_path(m, imports, NEVER_LOADED)):
            problems.append(f"[{m} never loads {' or '.join(NEVER_LOADED)}] {' -> '.join(path)}")
    return problems


# ---------------------------------------------------------------------------------------------- the real code

def test_the_code_keeps_every_contract_and_the_table_says_so() -> None:
    problems = check(PACKAGE, ARCHITECTURE.read_text(encoding="utf-8"))
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("module", NEVER_LOAD_THEM)
def test_a_real_interpreter_importing_a_boto3_free_stage_never_loads_boto3(module: str) -> None:
    """What the syntax trees promise, seen by Python itself, third-party imports and all."""
    loaded = _loaded_after_import(module)
    assert not any(m.split(".")[0] in NEVER_LOADED for m in loaded), sorted(loaded)


def test_the_interpreter_probe_does_see_boto3_where_it_is_loaded() -> None:
    assert "boto3" in _loaded_after_import("aws")


def _loaded_after_import(module: str) -> set[str]:
    probe = f"import sys, go_arm_lambda.{module}; print('\\n'.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


# ---------------------------------------------------------------------------------------------- violations

@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the package to break on purpose."""
    out = tmp_path / PACKAGE.name
    shutil.copytree(PACKAGE, out, ignore=shutil.ignore_patterns("__pycache__"))
    return out


def inject(package: Path, module: str, code: str) -> None:
    path = package / f"{module}.py"
    path.write_text(path.read_text(encoding="utf-8") + "\n" + code + "\n", encoding="utf-8")


@functools.cache
def _real_problems(architecture: str) -> tuple[str, ...]:
    """The real package's own problems, checked once for all the violation tests (each check parses every module)."""
    return tuple(check(PACKAGE, architecture))


def problems_of(package: Path, architecture: str | None = None) -> list[str]:
    """What the violation adds: the real code's own problems, if any, are the first test's to report."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    before = _real_problems(text)
    return [p for p in check(package, text if architecture is None else architecture) if p not in before]


def test_boto3_imported_by_build_breaks_three_contracts(copy: Path) -> None:
    inject(copy, "build", "import boto3")
    problems = problems_of(copy)
    line = len((copy / "build.py").read_text().splitlines())
    assert problems == [f"[table] build imports boto3 (line {line}), which ARCHITECTURE.md does not list",
                        f"[only aws imports boto3] build imports it at line {line}",
                        "[build never loads boto3 or botocore] build -> boto3"]


def test_boto3_imported_lazily_still_breaks_the_table_and_ownership_but_not_import_time(copy: Path) -> None:
    inject(copy, "package", "def _later() -> None:\n    import botocore.session")
    problems = problems_of(copy)
    assert [p.split("]")[0] + "]" for p in problems] == ["[table]", "[only aws imports botocore]"]


def test_boto3_reached_through_another_module_is_named_with_its_chain(copy: Path) -> None:
    (copy / "relay.py").write_text("from go_arm_lambda import aws\n")
    inject(copy, "smoke", "from go_arm_lambda import relay")
    problems = problems_of(copy)
    assert "[smoke never loads boto3 or botocore] smoke -> relay -> aws -> boto3" in problems
    assert any(p.startswith("[table] smoke imports relay") for p in problems)


def test_an_upward_import_breaks_the_layers(copy: Path) -> None:
    inject(copy, "limits", "def _later() -> None:\n    from go_arm_lambda import pipeline")
    line = len((copy / "limits.py").read_text().splitlines())
    assert f"[layers] limits (model) imports pipeline (pipeline) at line {line}: a higher layer" \
        in problems_of(copy)


def test_an_import_cycle_is_named(copy: Path) -> None:
    inject(copy, "errors", "from go_arm_lambda import limits")
    assert "[layers] a cycle at import time: errors -> limits -> errors" in problems_of(copy)


@pytest.mark.parametrize("code", ["import subprocess", "import multiprocessing.pool",
                                  "import os\nos.system('true')", "from os import execvp"])
def test_starting_a_process_outside_proc_is_named(copy: Path, code: str) -> None:
    inject(copy, "smoke", code)
    assert any(p.startswith(("[only proc imports", "[only proc starts processes] smoke calls"))
               for p in problems_of(copy)), problems_of(copy)


def test_github_outside_ghclient_is_named(copy: Path) -> None:
    inject(copy, "report", "from github import Github")
    assert any(p.startswith("[only ghclient imports PyGithub] report imports it") for p in problems_of(copy))


def test_a_listed_import_that_never_happens_is_named(copy: Path) -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    row = next(ln for ln in text.splitlines() if ln.startswith("| `verify.py`"))
    longer = row.rstrip().removesuffix("|").rstrip() + ", proc |"
    assert problems_of(copy, text.replace(row, longer)) == ["[table] verify lists proc, which it never imports"]


def test_a_module_without_a_row_and_a_row_without_a_module_are_named(copy: Path) -> None:
    (copy / "extra.py").write_text('"""Nothing yet."""\n')
    text = ARCHITECTURE.read_text(encoding="utf-8")
    row = next(ln for ln in text.splitlines() if ln.startswith("| `doctor.py`"))
    problems = problems_of(copy, text.replace(row, row.replace("doctor.py", "doktor.py")))
    assert "[table] extra.py has no row in ARCHITECTURE.md's table" in problems
    assert "[table] doctor.py has no row in ARCHITECTURE.md's table" in problems
    assert f"[table] the row doktor names no module in {PACKAGE.name}" in problems


def test_rows_out_of_order_are_named(copy: Path) -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    lines = text.splitlines()
    rows = {r.module: i for i, r in zip(_row_indexes(lines), parse_table(text), strict=True)}
    swapped = list(lines)
    swapped[rows["build"]], swapped[rows["verify"]] = lines[rows["verify"]], lines[rows["build"]]
    swapped[rows["cli"]], swapped[rows["errors"]] = lines[rows["errors"]], lines[rows["cli"]]
    problems = problems_of(copy, "\n".join(swapped))
    assert "[order] the table's rows are not grouped by layer from cli down to errors" in problems
    assert any(p.startswith("[order] the stage rows are not in the order pipeline.py runs them (build -> verify")
               for p in problems)


def _row_indexes(lines: list[str]) -> list[int]:
    start = next(i for i, ln in enumerate(lines) if re.match(r"\|\s*module\s*\|\s*layer\s*\|", ln))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return list(range(start + 2, end))


def test_a_contract_the_document_no_longer_states_is_named(copy: Path) -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    first = contract_lines()[1]
    assert problems_of(copy, text.replace(first, "")) == [f"[contracts] ARCHITECTURE.md does not say: {first}"]

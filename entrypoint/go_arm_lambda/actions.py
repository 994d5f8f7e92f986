"""The GitHub Actions runtime channel: outputs, annotations, groups, masks, the job summary, container fixes.

actions-toolkit gets the parts it gets right (the random-delimiter file-command format and the escaping of
workflow commands). Our own helpers replace the parts it gets wrong: it falls back to the deprecated
`::set-output` when `GITHUB_OUTPUT` is unset, emits empty annotation properties (`file=,line=`), has no job
summary helper and writes without flushing, so its `::group::` lines can land in the wrong place.

Every function takes the environment as an optional mapping (default `os.environ`) so tests and the CLI can
hand in exactly what a runner would set.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

from actions_toolkit.command import Command
from actions_toolkit.file_command import prepare_key_value_message

from go_arm_lambda import proc
from go_arm_lambda.errors import ToolchainError
from go_arm_lambda.render import fit

# GitHub refuses a step's summary larger than this and then shows none of it.
SUMMARY_LIMIT = 1024 * 1024
# Where Go's caches go under Actions unless the user set GOCACHE/GOMODCACHE: inside the workspace, because
# only the workspace is shared with the runner: `actions/cache` with `path: .go-arm-lambda/cache` keeps them.
# The leading dot keeps `go build ./...` from descending into the module cache.
CACHE_DIR = Path(".go-arm-lambda") / "cache"

Level = Literal["error", "warning", "notice"]


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def in_actions(env: Mapping[str, str] | None = None) -> bool:
    return _env(env).get("GITHUB_ACTIONS") == "true"


def _command(name: str, properties: Mapping[str, object], message: str) -> None:
    # Flush around the line: our stdout is a pipe (block buffered) while child processes and stderr are not,
    # and a workflow command that arrives late groups or annotates the wrong lines.
    sys.stderr.flush()
    sys.stdout.write(str(Command(name, dict(properties), message)) + "\n")
    sys.stdout.flush()


def set_outputs(outputs: Mapping[str, str], env: Mapping[str, str] | None = None) -> None:
    """Append step outputs to `$GITHUB_OUTPUT` with a random delimiter, so multi-line values are safe.

    Without `GITHUB_OUTPUT` (outside Actions, or `docker run`) there is nowhere to put them and nothing is
    written: the deprecated `::set-output` command is never used.
    """
    path = _env(env).get("GITHUB_OUTPUT")
    if not path:
        return
    with open(path, "a", encoding="utf-8", newline="") as f:
        for name, value in outputs.items():
            f.write(prepare_key_value_message(name, value) + "\n")


def annotate(level: Level, message: str, file: str | None = None, line: int | None = None,
             col: int | None = None, title: str | None = None) -> None:
    """Print `::error file=F,line=L,col=C,title=T::message`, leaving out properties that have no value.

    The runner rejects or misplaces annotations with empty properties such as `line=`.
    """
    properties = {"file": file, "line": line, "col": col, "title": title}
    _command(level, {k: v for k, v in properties.items() if v not in (None, "")}, message)


@contextlib.contextmanager
def group(name: str, *, enabled: bool = True) -> Iterator[None]:
    """A foldable log group around the block. `enabled=False` (outside Actions) prints nothing."""
    if not enabled:
        yield
        return
    _command("group", {}, name)
    try:
        yield
    finally:
        _command("endgroup", {}, "")


def mask(value: str | None) -> None:
    """Ask the runner to hide a secret in the log. Each line of a multi-line value is masked on its own,
    because the runner matches masks line by line."""
    if not value:
        return
    lines = [value] if "\n" not in value else [ln.strip() for ln in value.splitlines()]
    for line in lines:
        if line:
            _command("add-mask", {}, line)


def append_summary(markdown: str, env: Mapping[str, str] | None = None) -> bool:
    """Append Markdown to `$GITHUB_STEP_SUMMARY`; returns whether it had to be cut to fit 1 MiB.

    The limit is per step and counts what is already in the file, so a summary appended in two parts
    still stays under it. Nothing happens without `GITHUB_STEP_SUMMARY`.
    """
    path = _env(env).get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    summary = Path(path)
    used = summary.stat().st_size if summary.exists() else 0
    text = markdown if markdown.endswith("\n") else markdown + "\n"
    room = max(SUMMARY_LIMIT - used, 0)
    fitted = fit(text, room, "\n_The summary was cut here: GitHub keeps at most 1 MiB per step. "
                             "The full report is in the JSON report file._\n",
                 measure=lambda s: len(s.encode("utf-8")))
    with open(summary, "a", encoding="utf-8") as f:
        f.write(fitted)
    return fitted != text


def relative_to_workspace(path: str | os.PathLike[str], base: str | os.PathLike[str] | None = None,
                          env: Mapping[str, str] | None = None) -> str:
    """The path as the repository sees it, which is what annotations need to attach to a file.

    A relative `path` is taken relative to `base` (e.g. the Go module directory whose compiler printed it),
    or to the current directory. A path outside the workspace is returned absolute, unchanged.
    """
    p = Path(os.path.normpath(Path(base or Path.cwd()) / path))
    workspace = _env(env).get("GITHUB_WORKSPACE")
    if not workspace:
        return str(p)
    for root, candidate in ((Path(os.path.normpath(workspace)), p),
                            (Path(os.path.realpath(workspace)), Path(os.path.realpath(p)))):
        if candidate.is_relative_to(root):
            return candidate.relative_to(root).as_posix() or "."
    return str(p)


def _git_roots(workspace: Path, source: Path | None) -> list[Path]:
    """The workspace and every git checkout between it and the source directory (`actions/checkout` with
    `path:` puts the repository in a subdirectory). Git 2.39 in the image has no `dir/*` wildcard."""
    roots = [workspace]
    if source is None:
        return roots
    top = workspace.resolve()
    start = (workspace / source).resolve()  # an absolute source stays as it is
    for p in [start, *start.parents]:
        if p == top or not p.is_relative_to(top):
            break
        if (p / ".git").exists():
            roots.append(p)
    return roots


def prepare_container(env: Mapping[str, str] | None = None, source: Path | None = None) -> dict[str, str]:
    """Fix what running as root in someone else's workspace breaks. Returns environment additions for Go.

    - git `safe.directory` for the workspace (and a checkout below it that holds `source`), so `go build`
      can read VCS status instead of failing with "dubious ownership". Written to the global git config
      of `$HOME` (`/github/home` in the container), once.
    - `GOCACHE` and `GOMODCACHE` under `$GITHUB_WORKSPACE/.go-arm-lambda/cache/{go-build,mod}` unless the
      user set them, so actions/cache can keep them; with our module cache also `-modcacherw` in GOFLAGS,
      since Go makes it read-only and the next `actions/checkout` clean would fail to delete it.

    `env` is the whole process environment (default `os.environ`). Without `GITHUB_WORKSPACE` (not under
    Actions) nothing is done and `{}` returned. Call `chown_like_workspace` on what the run wrote, at the end.
    """
    env = _env(env)
    workspace_text = env.get("GITHUB_WORKSPACE")
    if not workspace_text:
        return {}
    workspace = Path(workspace_text)
    git_env = dict(env)
    known = proc.run(["git", "config", "--global", "--get-all", "safe.directory"], env=git_env, timeout=30)
    present = set(known.stdout.split("\n")) if known.ok else set()
    for root in _git_roots(workspace, source):
        if str(root) not in present:
            done = proc.run(["git", "config", "--global", "--add", "safe.directory", str(root)],
                            env=git_env, timeout=30)
            if not done.ok:
                raise ToolchainError(f"git could not mark {root} as a safe directory ({done.stderr.strip()})",
                                     "check that $HOME is writable")
            present.add(str(root))

    additions: dict[str, str] = {}
    for var, sub in (("GOCACHE", "go-build"), ("GOMODCACHE", "mod")):
        if not env.get(var):
            additions[var] = str(workspace / CACHE_DIR / sub)
            Path(additions[var]).mkdir(parents=True, exist_ok=True)
    if "GOMODCACHE" in additions and "-modcacherw" not in env.get("GOFLAGS", "").split():
        additions["GOFLAGS"] = f"{env.get('GOFLAGS', '')} -modcacherw".strip()
    return additions


def chown_like_workspace(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> None:
    """Give `path` (recursively) the owner of `$GITHUB_WORKSPACE`, so the runner's user can clean and cache
    what the root-run container wrote there. Symlinks are changed themselves, never their targets.

    Does nothing outside Actions, when not root (files are already the caller's), for a path outside the
    workspace, or for a path that does not exist.
    """
    workspace = _env(env).get("GITHUB_WORKSPACE")
    target = Path(path)
    if not workspace or os.geteuid() != 0 or not target.exists():
        return
    root = Path(workspace).resolve()
    if not target.resolve().is_relative_to(root):
        return
    st = os.stat(root)
    os.lchown(target, st.st_uid, st.st_gid)
    if target.is_dir() and not target.is_symlink():
        for dirpath, dirnames, filenames in os.walk(target):
            for name in dirnames + filenames:
                os.lchown(os.path.join(dirpath, name), st.st_uid, st.st_gid)

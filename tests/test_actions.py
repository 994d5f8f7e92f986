"""The Actions runtime channel, checked by what the runner would read: the files and the log lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, require_tool
from go_arm_lambda import actions


def parse_output_file(text: str) -> dict[str, str]:
    """Reads $GITHUB_OUTPUT as the runner does: `name=value` lines and `name<<DELIM ... DELIM` blocks."""
    outputs: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)  # ValueError: an unterminated block, as the runner would fail
            outputs[name] = "\n".join(lines[i + 1:end])
            i = end + 1
        else:
            if line:
                name, value = line.split("=", 1)
                outputs[name] = value
            i += 1
    return outputs


def test_outputs_go_to_the_file_with_a_random_delimiter(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    out = tmp_path / "output"
    out.write_text("earlier=1\n")
    env = {"GITHUB_OUTPUT": str(out)}
    actions.set_outputs({"layer-arn": "arn:aws:lambda:eu-west-1:123456789012:layer:x:3",
                         "report": "multi\nline\nvalue with ghadelimiter_ text"}, env)
    actions.set_outputs({"changed": "true", "layer-arns": '{"eu-west-1": "arn"}'}, env)
    text = out.read_text()
    assert parse_output_file(text) == {
        "earlier": "1", "layer-arn": "arn:aws:lambda:eu-west-1:123456789012:layer:x:3",
        "report": "multi\nline\nvalue with ghadelimiter_ text", "changed": "true",
        "layer-arns": '{"eu-west-1": "arn"}'}
    delimiters = [line.split("<<")[1] for line in text.splitlines() if "<<" in line]
    assert len(set(delimiters)) == 4  # a fresh one per value, so no value can end a block early
    assert capsys.readouterr().out == ""  # never ::set-output


def test_outputs_outside_actions_do_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    actions.set_outputs({"changed": "false"}, {})
    assert capsys.readouterr().out == ""


def test_annotation_escapes_and_drops_empty_properties(capsys: pytest.CaptureFixture[str]) -> None:
    actions.annotate("error", "undefined: handler\n\tmore 100%", file="cmd/orders/main.go", line=12, col=3,
                     title="go build failed: orders, eu")
    actions.annotate("warning", "no file", file=None, line=None, title="")
    actions.annotate("notice", "r\r\nx", file="a,b:c.go")
    assert capsys.readouterr().out.splitlines() == [
        "::error file=cmd/orders/main.go,line=12,col=3,title=go build failed%3A orders%2C eu"
        "::undefined: handler%0A\tmore 100%25",
        "::warning::no file",
        "::notice file=a%2Cb%3Ac.go::r%0D%0Ax",
    ]


def test_mask_each_line_of_a_secret(capsys: pytest.CaptureFixture[str]) -> None:
    actions.mask("ghs_secret")
    actions.mask("line-one\n\nline%two\n")
    actions.mask("")
    actions.mask(None)
    assert capsys.readouterr().out.splitlines() == ["::add-mask::ghs_secret", "::add-mask::line-one",
                                                    "::add-mask::line%25two"]


def test_group_closes_on_error_and_can_be_off(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError), actions.group("build: orders, 2%"):
        print("inside")
        raise RuntimeError("boom")
    with actions.group("quiet", enabled=False):
        print("plain")
    assert capsys.readouterr().out.splitlines() == ["::group::build: orders, 2%25", "inside", "::endgroup::",
                                                    "plain"]


def test_group_lines_stay_in_order_with_child_process_output(tmp_path: Path) -> None:
    # Through a pipe, as on a runner: Python block-buffers stdout while the child writes straight to the fd.
    script = ("import subprocess\nfrom go_arm_lambda import actions\n"
              "print('before')\n"
              "with actions.group('build'):\n"
              "    subprocess.run(['echo', 'child says hi'], check=True)\n"
              "print('after')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          cwd=ROOT, timeout=60)
    assert done.stdout.splitlines() == ["before", "::group::build", "child says hi", "::endgroup::", "after"]


def test_summary_is_appended(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    assert actions.append_summary("## one", env) is False
    assert actions.append_summary("two\n", env) is False
    assert summary.read_text() == "## one\ntwo\n"
    assert actions.append_summary("ignored", {}) is False


def test_summary_is_cut_to_fit_one_mib_per_step_counting_what_is_there(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("x" * (actions.SUMMARY_LIMIT - 5000) + "\n")
    table = "".join(f"| fünction-{i} | ✅ ok |\n" for i in range(2000))  # multi-byte: bytes count, not chars
    assert actions.append_summary(table, {"GITHUB_STEP_SUMMARY": str(summary)}) is True
    data = summary.read_bytes()
    assert len(data) <= actions.SUMMARY_LIMIT
    text = data.decode("utf-8")
    assert "| fünction-0 | ✅ ok |" in text and "| fünction-1999 |" not in text
    assert text.rstrip().endswith("at most 1 MiB per step. The full report is in the JSON report file._")
    # Full already: nothing fits, nothing is written, and the file stays valid.
    assert actions.append_summary("more", {"GITHUB_STEP_SUMMARY": str(summary)}) is True
    assert summary.read_bytes() == data


def test_relative_to_workspace(tmp_path: Path) -> None:
    env = {"GITHUB_WORKSPACE": str(tmp_path / "ws")}
    module = tmp_path / "ws" / "services" / "api"
    assert actions.relative_to_workspace("./cmd/orders/main.go", base=module, env=env) == \
        "services/api/cmd/orders/main.go"
    assert actions.relative_to_workspace(module / "go.mod", env=env) == "services/api/go.mod"
    assert actions.relative_to_workspace("/usr/local/go/src/x.go", env=env) == "/usr/local/go/src/x.go"
    assert actions.relative_to_workspace("a.go", base="/src", env={}) == "/src/a.go"


def test_in_actions() -> None:
    assert actions.in_actions({"GITHUB_ACTIONS": "true"})
    assert not actions.in_actions({})


def _git(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("git"), *args], capture_output=True, text=True, env=env, timeout=60)


def test_prepare_container_cures_dubious_ownership_and_places_go_caches(tmp_path: Path) -> None:
    ws, home = tmp_path / "ws", tmp_path / "home"
    (ws / "sub").mkdir(parents=True)
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "GITHUB_WORKSPACE": str(ws), "GOFLAGS": "-trimpath"}
    env.pop("GOCACHE", None)
    env.pop("GOMODCACHE", None)
    env.pop("GIT_CONFIG_GLOBAL", None)
    for repo in (ws, ws / "sub"):  # the workspace, and a checkout made with `path: sub`
        assert _git("init", "-q", str(repo), env=env).returncode == 0
    # The runner's user owns the workspace; the container runs as root.
    for p in (ws, ws / ".git", ws / "sub", ws / "sub" / ".git"):
        os.chown(p, 4242, 4343)
    refused = _git("-C", str(ws / "sub"), "status", env=env)
    assert refused.returncode != 0 and "dubious ownership" in refused.stderr

    additions = actions.prepare_container(env, source=Path("sub"))
    actions.prepare_container(env, source=Path("sub"))  # a second run adds nothing twice

    assert _git("-C", str(ws), "status", env=env).returncode == 0
    assert _git("-C", str(ws / "sub"), "status", env=env).returncode == 0
    listed = _git("config", "--global", "--get-all", "safe.directory", env=env).stdout.split()
    assert listed == [str(ws), str(ws / "sub")]
    assert additions == {"GOCACHE": str(ws / ".go-arm-lambda/cache/go-build"),
                         "GOMODCACHE": str(ws / ".go-arm-lambda/cache/mod"),
                         "GOFLAGS": "-trimpath -modcacherw"}
    assert Path(additions["GOCACHE"]).is_dir() and Path(additions["GOMODCACHE"]).is_dir()


def test_prepare_container_keeps_the_users_caches_and_does_nothing_outside_actions(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "GITHUB_WORKSPACE": str(tmp_path / "ws"),
           "GOCACHE": "/cache/build", "GOMODCACHE": "/cache/mod"}
    env.pop("GIT_CONFIG_GLOBAL", None)
    (tmp_path / "ws").mkdir()
    assert actions.prepare_container(env) == {}
    assert not (tmp_path / "ws" / ".go-arm-lambda").exists()
    outside = {k: v for k, v in env.items() if k != "GITHUB_WORKSPACE"}
    assert actions.prepare_container(outside) == {}


def test_chown_like_workspace_recursively_without_following_links(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    dist = ws / ".go-arm-lambda" / "dist"
    dist.mkdir(parents=True)
    os.chown(ws, 4242, 4343)
    (dist / "orders.zip").write_bytes(b"zip")
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    (dist / "link").symlink_to(outside)
    report = ws / "report.json"
    report.write_text("{}")
    env = {"GITHUB_WORKSPACE": str(ws)}

    actions.chown_like_workspace(ws / ".go-arm-lambda", env)
    actions.chown_like_workspace(report, env)
    actions.chown_like_workspace(outside, env)  # outside the workspace: left alone

    for p in (ws / ".go-arm-lambda", dist, dist / "orders.zip", dist / "link", report):
        st = os.lstat(p)
        assert (st.st_uid, st.st_gid) == (4242, 4343), p
    assert os.stat(outside).st_uid == os.getuid()

"""The content cache: entries checked before use, the stat memo's rules, and real builds that change a shared
package, a go.mod requirement, a build flag and the layer, each redoing exactly what the change reaches."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from conftest import EXAMPLES, require_tool
from go_arm_lambda import cache, config, package, pipeline, progress, smoke, verify
from go_arm_lambda.cache import Cache, Digests

ALL = frozenset({"verify", "package", "smoke"})


def settled_file(path: Path, data: bytes) -> Path:
    """A file last changed long enough ago that a hash of it now is trusted."""
    path.write_bytes(data)
    time.sleep(cache.FINE_MARGIN_NS / 1e9 + 0.02)
    return path


# --- records and zips ------------------------------------------------------------------------------------------

def test_a_record_comes_back_as_stored(tmp_path: Path) -> None:
    store = Cache(tmp_path)
    k = cache.key("smoke", "abc", 1)
    assert store.get("smoke", k) is None
    store.put("smoke", k, {"ok": True, "payload": "e30="})
    assert store.get("smoke", k) == {"ok": True, "payload": "e30="}
    assert k != cache.key("smoke", "abc", 2) and k != cache.key("verify", "abc", 1)


@pytest.mark.parametrize("damage", ["value", "key", "format", "kind", "truncated", "not json"])
def test_a_damaged_or_foreign_record_is_a_miss_and_is_removed(tmp_path: Path, damage: str) -> None:
    store = Cache(tmp_path)
    k = cache.key("verify", "abc")
    store.put("verify", k, {"status": "failed"})
    path = next(tmp_path.rglob(f"{k}.json"))
    doc = json.loads(path.read_bytes())
    if damage == "value":  # edited, checksum left alone
        doc["value"]["status"] = "ok"
    elif damage == "key":  # another entry's record under this name
        doc["key"] = cache.key("verify", "other")
    elif damage == "format":  # written by another format of the cache
        doc["format"] = cache.FORMAT + 1
    elif damage == "kind":
        doc["kind"] = "smoke"
    text = json.dumps(doc).encode()
    path.write_bytes({"truncated": text[:-9], "not json": b"\x00\xff garbage"}.get(damage, text))
    assert store.get("verify", k) is None
    assert not path.exists()


def test_a_record_its_owner_cannot_read_is_a_miss_and_is_removed(tmp_path: Path) -> None:
    store = Cache(tmp_path)
    k = cache.key("smoke", "abc")
    store.put("smoke", k, {"ok": True})  # checks out, but is not what SmokeResult.from_record reads
    assert store.get("smoke", k, smoke.SmokeResult.from_record) is None
    assert store.get("smoke", k) is None


def test_a_zip_entry_is_checked_against_its_record_and_rebuilt_when_tampered_with(tmp_path: Path) -> None:
    made = package.write_zip(tmp_path / "out" / "fn.zip", {"fn": b"\x7fELF" + bytes(5000)})
    store = Cache(tmp_path / "cache")
    k = cache.key("zip", "binary-digest")
    store.put_zip(k, made.path, made.sha256, made.size, made.unzipped_size)
    store.close()

    store = Cache(tmp_path / "cache")  # the next run
    hit = store.zip(k)
    assert hit is not None and (hit.sha256, hit.size) == (made.sha256, made.size)
    # Same size, same mtime put back: only the bytes (and the ctime nobody can set) differ.
    before = hit.path.stat()
    data = bytearray(hit.path.read_bytes())
    data[-30] ^= 0xFF
    with open(hit.path, "r+b") as f:
        f.write(data)
    os.utime(hit.path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert Cache(tmp_path / "cache").zip(k) is None
    assert not hit.path.exists() and not list((tmp_path / "cache").rglob(f"{k}.json"))


def test_a_cached_zip_is_placed_by_a_link_and_not_again_when_in_place(tmp_path: Path) -> None:
    made = package.write_zip(tmp_path / "made.zip", {"fn": b"binary"})
    store = Cache(tmp_path / "cache")
    store.put_zip("k" * 64, made.path, made.sha256, made.size, made.unzipped_size)
    hit = store.zip("k" * 64)
    assert hit is not None
    dest = tmp_path / "out" / "fn.zip"
    store.place(hit, dest)
    assert dest.read_bytes() == made.path.read_bytes()
    inode = dest.stat().st_ino
    store.place(hit, dest)
    assert dest.stat().st_ino == inode  # nothing copied or linked again


def test_an_unwritable_cache_is_reported_once_and_the_run_goes_on(tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory should be")
    said: list[str] = []
    store = Cache(blocker, on_problem=said.append)
    store.put("smoke", "a" * 64, {"ok": True})
    store.put("smoke", "b" * 64, {"ok": True})
    store.close()
    assert len(said) == 1 and said[0].startswith("cache: cannot write ") and "make the cache directory" in said[0]
    assert store.get("smoke", "a" * 64) is None


def test_entries_unused_for_long_are_pruned_with_their_zips(tmp_path: Path) -> None:
    store = Cache(tmp_path)
    made = package.write_zip(tmp_path / "made.zip", {"fn": b"binary"})
    store.put_zip("o" * 64, made.path, made.sha256, made.size, made.unzipped_size)
    store.put("smoke", "n" * 64, {"ok": True})
    old = time.time() - cache.MAX_AGE_S - 60
    leftover = tmp_path / f"v{cache.FORMAT}" / "smoke" / ".half-written.json.tmp"
    leftover.write_text("{")
    for path in (*tmp_path.rglob(f"{'o' * 64}.json"), leftover):
        os.utime(path, (old, old))
    assert store.prune(time.time() - cache.MAX_AGE_S) == 1
    assert store.zip("o" * 64) is None and not list(tmp_path.rglob(f"{'o' * 64}.zip"))
    assert store.get("smoke", "n" * 64) == {"ok": True} and not leftover.exists()


def test_a_cached_verdict_names_inputs_as_the_run_that_reads_it(tmp_path: Path, fixture_bins: Path) -> None:
    """A verdict's messages name an input as its run's user gives it: the Action's run is not served the
    CLI's wording from a cache they share."""
    binary = settled_file(tmp_path / "nolambda", (fixture_bins / "nolambda").read_bytes())
    store = Cache(tmp_path / "cache")
    for surface, wording, cached in (("build", "--allow-custom-runtime-client", False),
                                     ("deploy", "--allow-custom-runtime-client", True),
                                     ("action", "allow-custom-runtime-client: true", False)):
        with config.speaking_to(surface):
            verdict, hit = pipeline._verify(store, binary, "nolambda", verify.Policy())
        assert hit is cached and wording in verdict.findings[0].message


# --- the stat memo ---------------------------------------------------------------------------------------------

def test_a_remembered_digest_is_used_only_while_the_stamp_holds(tmp_path: Path) -> None:
    f = settled_file(tmp_path / "bin", b"A" * 1000)
    memo = tmp_path / "memo.json"
    digests = Digests(memo)
    first = digests.of_file(f)
    digests.save()
    again = Digests(memo)
    assert again.known(f) == first
    # Rewritten in place with the same size, and its mtime put back (`touch -d`): ctime still moves.
    st = f.stat()
    f.write_bytes(b"B" * 1000)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert Digests(memo).known(f) is None
    assert Digests(memo).of_file(f) != first


def test_a_file_hashed_right_after_a_change_is_hashed_again(tmp_path: Path) -> None:
    f = tmp_path / "bin"
    f.write_bytes(b"fresh")
    digests = Digests(tmp_path / "memo.json")
    digests.of_file(f)  # within the margin of the write: a same-tick change after it would not show
    assert digests.known(f) is None
    time.sleep(cache.FINE_MARGIN_NS / 1e9 + 0.02)
    digests.of_file(f)  # read again, now long after the change: trusted
    assert digests.known(f) is not None


def test_a_damaged_memo_costs_a_reading_not_a_wrong_answer(tmp_path: Path) -> None:
    f = settled_file(tmp_path / "bin", b"content")
    memo = tmp_path / "memo.json"
    memo.write_text('{"format": 1, "files": {"' + str(f) + '": [1, 2, 3]}}')
    digests = Digests(memo)
    assert digests.known(f) is None
    assert digests.of_file(f) == Digests().of_file(f)


def test_go_builds_touch_keeps_the_digest_and_a_rewrite_does_not(tmp_path: Path) -> None:
    bins = tmp_path / "bin"
    bins.mkdir()
    touched = settled_file(bins / "touched", b"\x7fELF head" + bytes(40000))
    rewritten = settled_file(bins / "rewritten", b"\x7fELF head" + bytes(40000))
    replaced = settled_file(bins / "replaced", b"\x7fELF head" + bytes(40000))
    digests = Digests(tmp_path / "memo.json")
    for f in (touched, rewritten, replaced):
        digests.of_file(f)
    kept = digests.before_build([bins])
    assert set(kept) == {str(touched), str(rewritten), str(replaced)}
    os.utime(touched)  # what go build does to an up-to-date target
    with open(rewritten, "r+b") as f:  # relinked in place: another build ID at the start
        f.write(b"\x7fELF HEAD")
    new = tmp_path / "new"
    new.write_bytes(replaced.read_bytes())
    new.replace(replaced)  # same bytes, another file: read again to be sure
    digests.after_build(kept, [bins])
    assert digests.known(touched) == kept[str(touched)][0]
    assert digests.known(rewritten) is None and digests.known(replaced) is None


# --- real builds: exactly what a change reaches is redone, and nothing stale is served ------------------------

MAIN = """package main

import (
\t"context"

\t"github.com/aws/aws-lambda-go/lambda"
{imports}
)

func handle(_ context.Context, _ map[string]any) (string, error) {{ return {value}, nil }}

func main() {{ lambda.Start(handle) }}
"""
FUNCTIONS = {  # name -> (imports, value)
    "shared": ('\t"example.com/cachetest/internal/shared"', "shared.Greeting()"),
    "both": ('\t"example.com/cachetest/internal/shared"\n\t"example.com/helper"',
             'shared.Greeting() + " " + helper.Word()'),
    "helper": ('\t"example.com/helper"', "helper.Word()"),
    "plain": ("", '"plain"'),
}
GO_MOD = """module example.com/cachetest

go 1.26

require (
\tgithub.com/aws/aws-lambda-go v1.55.1
\texample.com/helper v0.0.0
)

replace example.com/helper => ./{helper}
"""


def make_module(root: Path) -> Path:
    """Four functions: two use a shared internal package, two a module required through go.mod."""
    root.mkdir()
    (root / "go.mod").write_text(GO_MOD.format(helper="helper-a"))
    shutil.copy(EXAMPLES / "go.sum", root / "go.sum")
    (root / "internal" / "shared").mkdir(parents=True)
    (root / "internal" / "shared" / "shared.go").write_text(
        'package shared\n\nfunc Greeting() string { return "hello" }\n')
    for version in ("a", "b"):
        helper = root / f"helper-{version}"
        helper.mkdir()
        (helper / "go.mod").write_text("module example.com/helper\n\ngo 1.26\n")
        (helper / "helper.go").write_text(f'package helper\n\nfunc Word() string {{ return "{version}" }}\n')
    for name, (imports, value) in FUNCTIONS.items():
        (root / "cmd" / name).mkdir(parents=True)
        (root / "cmd" / name / "main.go").write_text(MAIN.format(imports=imports, value=value))
    return root


class Runs:
    def __init__(self, tmp_path: Path) -> None:
        require_tool("go")
        require_tool("qemu-aarch64-static")
        self.tmp = tmp_path
        self.module = make_module(tmp_path / "module")
        self.flags: dict[str, object] = {}

    def cfg(self, out: str, **more: object) -> config.Config:
        return config.load({"source": str(self.module), "out": str(self.tmp / out),
                            "cache_dir": str(self.tmp / "cache"),
                            "functions": [f"{n}=./cmd/{n}" for n in FUNCTIONS], **self.flags, **more}, env={})

    def run(self) -> dict[str, pipeline.FunctionArtifacts]:
        """A cached build; every zip is checked against one made without the cache from the same source."""
        job = progress.Job("plain", io.StringIO())
        got = {f.built.spec.name: f for f in pipeline.build_and_package(self.cfg("out"), job).functions}
        fresh = pipeline.build_and_package(self.cfg("reference", cache=False, verify=False, smoke=False))
        assert {f.built.spec.name: f.zip.sha256 for f in fresh.functions} == \
            {n: f.zip.sha256 for n, f in got.items()}, "the cache served a zip the source no longer makes"
        assert all(f.smoke and f.smoke.ok for f in got.values())
        return got

    def redone(self) -> dict[str, frozenset[str]]:
        """Per function, the stages that did their work again (the cache did not answer)."""
        return {name: ALL - f.cached for name, f in self.run().items()}


NONE: frozenset[str] = frozenset()


def each(stages: Iterable[str]) -> dict[str, frozenset[str]]:
    return {name: frozenset(stages) for name in FUNCTIONS}


@pytest.mark.slow
def test_a_change_redoes_exactly_the_functions_it_reaches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = Runs(tmp_path)
    assert runs.redone() == each(ALL)  # cold
    # Nothing changed: go build only touched the binaries, and nothing is read back to be hashed again.
    hashed: list[str] = []
    file_digest = hashlib.file_digest
    monkeypatch.setattr(hashlib, "file_digest", lambda f, name: hashed.append(f.name) or file_digest(f, name))
    assert runs.redone() == each(())
    assert [h for h in hashed if str(tmp_path / "out") in str(h) or str(tmp_path / "cache") in str(h)] == []
    monkeypatch.undo()

    shared = runs.module / "internal" / "shared" / "shared.go"
    shared.write_text(shared.read_text().replace('"hello"', '"hi"'))
    assert runs.redone() == {"shared": ALL, "both": ALL, "helper": NONE, "plain": NONE}

    go_mod = runs.module / "go.mod"
    go_mod.write_text(GO_MOD.format(helper="helper-b"))
    assert runs.redone() == {"shared": NONE, "both": ALL, "helper": ALL, "plain": NONE}

    runs.flags = {"ldflags": "-X main.flavour=x"}  # recorded in every binary's build info
    assert runs.redone() == each(ALL)
    runs.flags = {}  # back to binaries seen before: their entries answer again
    assert runs.redone() == each(())

    script = package.bootstrap_script()
    monkeypatch.setattr(package, "bootstrap_script", lambda: script + b"# another layer\n")
    assert runs.redone() == each({"smoke"})


@pytest.mark.slow
def test_tampered_entries_are_rebuilt_and_the_log_says_what_was_cached(tmp_path: Path) -> None:
    runs = Runs(tmp_path)
    runs.run()
    out_zip = tmp_path / "out" / "functions" / "plain.zip"
    cached_zip = next(z for z in (tmp_path / "cache").rglob("*.zip") if z.stat().st_ino == out_zip.stat().st_ino)
    data = bytearray(cached_zip.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cached_zip.write_bytes(bytes(data))  # the output's zip too: the same file
    shared_smoke = next(r for r in (tmp_path / "cache").rglob("smoke/*/*.json")
                        if json.loads(r.read_bytes())["value"]["response"] == "hello")
    doc = json.loads(shared_smoke.read_bytes())
    doc["value"]["response"] = "forged"  # its checksum left as it was
    shared_smoke.write_text(json.dumps(doc))

    job = progress.Job("plain", stream := io.StringIO())
    got = {f.built.spec.name: f for f in pipeline.build_and_package(runs.cfg("out"), job).functions}
    assert ALL - got["plain"].cached == {"package"}  # rebuilt to the same bytes, so its smoke result stands
    assert got["plain"].zip.sha256 == runs.run()["plain"].zip.sha256
    assert ALL - got["shared"].cached == {"smoke"} and got["shared"].smoke
    assert got["shared"].smoke.response == "hello"
    log = stream.getvalue()
    assert "smoke took " in log and "(4 done, 3 cached)" in log
    assert ": ok, cached" in log

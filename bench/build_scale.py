"""Build cost that grows with the change, not with the repository: 200 functions, measured side by side.

A generated module of 200 functions that share internal packages and aws-lambda-go (the examples' version),
everything on (verify and smoke included). Measured in one run, in this order:
  bare      `go build -o fresh/ ./cmd/...` into a fresh directory (the same flags and environment as ours)
  cold      `go-arm-lambda build` with a fresh output directory and a fresh cache       goal: <= 1.75x bare
  unchanged the same again, the output and the cache kept (as actions/cache restores them) goal: <= 0.05x cold
  one       one function's source changed, output and cache kept                      goal: <= 0.10x cold
The Go build cache is warm for all of them (a first bare build fills it), as it is in CI with actions/cache.

It also measures the floor under the cold goal: the bare build plus one emulated invocation of each binary
(qemu-aarch64 against the Runtime API emulator, as many at once as there are cores, with nothing of ours
around it: no zip, no layer, no reaper). No tool that smoke-invokes every function under qemu can build
cold in less, so `floor / bare` says how much of the 1.75x the emulator alone takes on this machine.

Run: .venv/bin/python bench/build_scale.py [--functions N]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "entrypoint"))

from go_arm_lambda import build, config, toolchain  # noqa: E402
from go_arm_lambda.runtime_api import RuntimeApiEmulator  # noqa: E402

WORK = ROOT / ".go-arm-lambda" / "bench" / "scale"
EVENTS = ["APIGatewayProxyRequest", "SQSEvent", "SNSEvent", "S3Event", "DynamoDBEvent", "KinesisEvent",
          "CloudWatchEvent", "EventBridgeEvent", "APIGatewayV2HTTPRequest", "CognitoEventUserPoolsPreSignup"]
GOALS = {"cold": 1.75, "unchanged": 0.05, "one": 0.10}

MODEL_GO = """package model

import "time"

// Envelope is what every function answers with.
type Envelope struct {
\tFunction string            `json:"function"`
\tKind     string            `json:"kind"`
\tAt       time.Time         `json:"at"`
\tFields   map[string]string `json:"fields"`
}
"""

RESPOND_GO = """package respond

import (
\t"encoding/json"
\t"fmt"
\t"sort"
\t"strings"
\t"time"

\t"bench/internal/model"
)

// Describe turns any event into a stable, sorted summary.
func Describe(function, kind string, event any) (model.Envelope, error) {
\traw, err := json.Marshal(event)
\tif err != nil {
\t\treturn model.Envelope{}, fmt.Errorf("%s: %w", function, err)
\t}
\tvar fields map[string]any
\t_ = json.Unmarshal(raw, &fields)
\tkeys := make([]string, 0, len(fields))
\tfor k := range fields {
\t\tkeys = append(keys, k)
\t}
\tsort.Strings(keys)
\tout := map[string]string{}
\tfor _, k := range keys {
\t\tout[strings.ToLower(k)] = fmt.Sprint(fields[k])
\t}
\treturn model.Envelope{Function: function, Kind: kind, At: time.Unix(0, 0).UTC(), Fields: out}, nil
}
"""

MAIN_GO = """package main

import (
\t"context"

\t"github.com/aws/aws-lambda-go/events"
\t"github.com/aws/aws-lambda-go/lambda"

\t"bench/internal/model"
\t"bench/internal/respond"
)

const name = "{name}"

func handle(_ context.Context, e events.{event}) (model.Envelope, error) {{
\treturn respond.Describe(name, "{event}", e)
}}

func main() {{ lambda.Start(handle) }}
"""


def make_module(dest: Path, count: int) -> list[str]:
    """`count` functions sharing two internal packages and aws-lambda-go, pinned as the examples pin it."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    gomod = (ROOT / "examples" / "go.mod").read_text().replace("example.com/go-arm-lambda-examples", "bench")
    (dest / "go.mod").write_text(gomod)
    shutil.copy(ROOT / "examples" / "go.sum", dest / "go.sum")
    for package, text in (("model", MODEL_GO), ("respond", RESPOND_GO)):
        (dest / "internal" / package).mkdir(parents=True)
        (dest / "internal" / package / f"{package}.go").write_text(text)
    names = [f"fn{i:03d}" for i in range(count)]
    for i, name in enumerate(names):
        (dest / "cmd" / name).mkdir(parents=True)
        (dest / "cmd" / name / "main.go").write_text(MAIN_GO.format(name=name, event=EVENTS[i % len(EVENTS)]))
    (dest / "go-arm-lambda.toml").write_text(
        "[functions]\n" + "".join(f'{n} = "./cmd/{n}"\n' for n in names))
    return names


@dataclass
class Run:
    wall: float  # seconds
    cpu: float  # user + system seconds of the command and everything it started
    stages: list[str]  # its stages' closing lines: "smoke took 1.2 s (200 done, 199 cached)"


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> Run:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv[:4])} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(wall, cpu, [line for line in done.stderr.splitlines() if re.match(r"\w+ took ", line)])


def emulated_invocations(binaries: list[Path]) -> Run:
    """Each binary invoked once under qemu with the smoke event, cores at a time: the emulator's own cost."""
    qemu = toolchain.find_qemu()

    def invoke(binary: Path) -> None:
        with RuntimeApiEmulator(b"{}", function_name=binary.name) as api:
            child = subprocess.Popen([qemu, str(binary)], env={"AWS_LAMBDA_RUNTIME_API": api.address},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                if not api.wait_for(lambda: api.state.outcome is not None, 30):
                    sys.exit(f"{binary.name} did not answer under qemu within 30 s")
            finally:
                child.kill()
                child.wait()
            if api.state.outcome is None or api.state.outcome.kind != "response":
                sys.exit(f"{binary.name} failed under qemu: {api.state.outcome}")

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(invoke, binaries))
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Run(wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), [])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--functions", type=int, default=200)
    args = ap.parse_args()
    module = WORK / "module"
    names = make_module(module, args.functions)
    cfg = config.load({"source": str(module)}, env={})
    go = toolchain.find_go()
    # The module proxy and -mod=mod: the generated go.mod needs no go.sum edits by hand.
    env = {**toolchain.build_env(goarm64=cfg.goarm64, cgo=False), "GOFLAGS": "-mod=mod"}
    bare = [go.path, "build", *build.build_flags(cfg), "-o"]
    out, cache = WORK / "out", WORK / "cache"
    ours = [sys.executable, "-m", "go_arm_lambda", "build", "--source", str(module), "--out", str(out),
            "--cache-dir", str(cache)]
    # The code as it is now: the cache's keys hold its digest, so an edit to the tree while the bench runs
    # would otherwise turn "nothing changed" into "everything changed".
    code = WORK / "code"
    shutil.rmtree(code, ignore_errors=True)
    shutil.copytree(ROOT / "entrypoint", code, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "layer", WORK / "layer", dirs_exist_ok=True)  # the bootstrap, beside it as in the tree
    ours_env = {**env, "PYTHONPATH": str(code)}

    def fresh(path: Path) -> Path:
        shutil.rmtree(path, ignore_errors=True)
        return path

    timed([*bare, f"{fresh(WORK / 'warm')}/", "./cmd/..."], module, env)  # fills the Go build cache
    runs: dict[str, Run] = {}
    runs["bare"] = timed([*bare, f"{fresh(WORK / 'fresh')}/", "./cmd/..."], module, env)
    qemu = emulated_invocations(sorted((WORK / "fresh").iterdir()))
    fresh(out), fresh(cache)
    runs["cold"] = timed(ours, module, ours_env)
    runs["unchanged"] = timed(ours, module, ours_env)
    changed = module / "cmd" / names[len(names) // 2] / "main.go"
    changed.write_text(changed.read_text().replace("const name = ", "const name = \"changed \" + "))
    runs["one"] = timed(ours, module, ours_env)

    print(f"{args.functions} functions, warm Go cache, verify and smoke on (cores: {os.cpu_count()}; "
          f"load average {os.getloadavg()[0]:.1f} at the end; CPU = user + system of all processes):")
    labels = {"bare": "bare go build -o fresh/ ./cmd/...", "cold": "go-arm-lambda build, cold",
              "unchanged": "go-arm-lambda build, nothing changed", "one": "go-arm-lambda build, one changed"}
    for key, label in labels.items():
        r = runs[key]
        print(f"  {label:<38} {r.wall:7.2f} s wall {r.cpu:7.2f} s CPU   {'; '.join(r.stages)}")
    floor = Run(runs["bare"].wall + qemu.wall, runs["bare"].cpu + qemu.cpu, [])
    print(f"  {'floor: bare + one qemu invocation each':<38} {floor.wall:7.2f} s wall {floor.cpu:7.2f} s CPU   "
          f"(the invocations: {qemu.wall:.2f} s wall, {qemu.cpu / args.functions * 1000:.0f} ms CPU each)")
    print(f"  floor     / bare = {floor.wall / runs['bare'].wall:5.3f}x wall: the least a cold build that "
          "smoke-invokes every function under qemu can take here")
    ok = True
    for key, goal in GOALS.items():
        base = "bare" if key == "cold" else "cold"
        ratio = runs[key].wall / runs[base].wall
        met = ratio <= goal
        ok &= met
        print(f"  {key:<9} / {base:<4} = {ratio:5.3f}x wall, {runs[key].cpu / runs[base].cpu:5.3f}x CPU "
              f"(goal <= {goal:.2f}x) {'OK' if met else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

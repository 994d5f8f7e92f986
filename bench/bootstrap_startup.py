"""What the bootstrap layer adds to a cold start. Goal: at most 1 ms over exec'ing the binary directly.

Measures start-to-first-Runtime-API-request: from just before the process is spawned until the function's
`GET /2018-06-01/runtime/invocation/next` reaches a listening socket on 127.0.0.1. The function is the real
`answer` fixture built natively for this host (an arm64 build would add qemu's start-up noise to both sides).
Runs alternate between the ways of starting it, so drift in machine load hits all alike. A one-line
`exec` script is timed too: it is the floor any sh bootstrap pays, which separates the shell's own start-up
(not ours to cut while the layer must be POSIX sh) from what our script's checks cost on top.

    .venv/bin/python bench/bootstrap_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "entrypoint"))

from go_arm_lambda import proc  # noqa: E402

OUT = ROOT / ".go-arm-lambda" / "bench" / "bootstrap-startup"
BOOTSTRAP = ROOT / "layer" / "bootstrap"
GOAL_MS = 1.0
TIMEOUT_S = 10.0
WARMUP = 5


def build_answer() -> Path:
    """A host-architecture build with the flags go-arm-lambda uses, into the bench's own directory."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    OUT.mkdir(parents=True, exist_ok=True)
    env = proc.merged_env({"CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false"}, drop=("GOOS", "GOARCH"))
    done = proc.run([go, "build", "-trimpath", "-tags", "lambda.norpc", "-ldflags", "-s -w", "-o", f"{OUT}/",
                     "./cmd/answer"], cwd=ROOT / "tests" / "fixtures" / "functions", env=env, timeout=600)
    if not done.ok:
        sys.exit(f"go build failed:\n{done.stderr}")
    # The layer script as Lambda gets it: 0755 whatever the checkout did with the mode.
    shutil.copyfile(BOOTSTRAP, OUT / "bootstrap")
    (OUT / "floor").write_text('#!/bin/sh\nexec "$LAMBDA_TASK_ROOT/$_HANDLER" "$@"\n')
    for script in ("bootstrap", "floor"):
        (OUT / script).chmod(0o755)
    return OUT / "answer"


def time_to_first_request(argv: list[str], env: dict[str, str], listener: socket.socket) -> float:
    """Milliseconds from spawning `argv` to the first invocation/next request on `listener` (which has a
    timeout set: the wait for the connection and for the request each end there)."""
    started = time.perf_counter()
    child = proc.start(argv, env=env, grace=0)
    request = b""
    arrived: float | None = None
    try:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(listener.gettimeout())
            while b"\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                request += chunk
            arrived = time.perf_counter()
    except TimeoutError:
        pass  # said below, once the child is gone and its stderr is in hand
    finally:
        # The one place the child is stopped and reaped, whichever way the wait ended: by its reaper, which
        # takes down whatever it started.
        proc.stop(child)
        with child.stdout, child.stderr:
            err = child.stderr.read()  # to its end at once: nothing that could still write it is left
    if arrived is None:
        sys.exit(f"{argv[0]} made no Runtime API request within {listener.gettimeout():g} s: "
                 f"{err.decode(errors='replace')[-500:]}")
    if not request.startswith(b"GET /2018-06-01/runtime/invocation/next "):
        sys.exit(f"unexpected first request from {argv[0]}: {request[:80]!r}")
    return (arrived - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    runs = parser.parse_args().runs
    binary = build_answer()

    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(TIMEOUT_S)
        env = {"PATH": "/usr/bin:/bin", "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{listener.getsockname()[1]}",
               "LAMBDA_TASK_ROOT": str(binary.parent), "_HANDLER": binary.name,
               "AWS_LAMBDA_FUNCTION_NAME": "answer", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128"}
        # /bin/sh through the shebang is what Lambda runs; provided.al2023's /bin/sh is bash, so time it too.
        ways = {"direct": [str(binary)], "one-line sh exec": [str(OUT / "floor")],
                "bootstrap, /bin/sh": [str(OUT / "bootstrap")]}
        bash = shutil.which("bash")
        if bash:
            ways["bootstrap, bash"] = [bash, str(OUT / "bootstrap")]
        samples: dict[str, list[float]] = {way: [] for way in ways}
        for i in range(WARMUP + runs):
            # Alternate the order too, so neither way always runs right after the other.
            for way in (list(ways) if i % 2 else list(reversed(ways))):
                ms = time_to_first_request(ways[way], env, listener)
                if i >= WARMUP:
                    samples[way].append(ms)

    medians = {way: statistics.median(values) for way, values in samples.items()}
    print(f"start to first invocation/next, {runs} interleaved runs each ({binary} built for this host)")
    print(f"{'start':<20} {'median ms':>10} {'p10 ms':>8} {'p90 ms':>8} {'extra ms':>9}  goal <= {GOAL_MS:g} ms")
    met = True
    for way, values in samples.items():
        deciles = statistics.quantiles(values, n=10)
        extra = medians[way] - medians["direct"]
        verdict = ""
        if way.startswith("bootstrap"):
            verdict = "met" if extra <= GOAL_MS else "NOT met"
            met = met and extra <= GOAL_MS
        print(f"{way:<20} {medians[way]:>10.2f} {deciles[0]:>8.2f} {deciles[-1]:>8.2f} {extra:>9.2f}  {verdict}")
    script = medians["bootstrap, /bin/sh"] - medians["one-line sh exec"]
    print(f"the bootstrap's checks cost {script:.2f} ms over a one-line sh exec; the rest is /bin/sh starting")
    print(f"goal (bootstrap adds at most {GOAL_MS:g} ms): {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""How long `verify` takes on a ~20 MB arm64 Go binary, beside `go version -m` on the same file.

Goal: read_binary + judge in at most 150 ms. The binary is a real Lambda function (aws-lambda-go, a spread of
standard library packages, symbols kept) with a 14 MB embedded asset, the way functions that ship templates
or data files grow; it is built once and cached in .go-arm-lambda/bench/verify/.

Run: .venv/bin/python bench/verify_speed.py
"""

from __future__ import annotations

import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "entrypoint"))

from go_arm_lambda import proc  # noqa: E402
from go_arm_lambda.binary import read_binary  # noqa: E402
from go_arm_lambda.verify import Policy, judge  # noqa: E402

GOAL_MS = 150.0
TARGET_BYTES = 20_000_000
WORK = ROOT / ".go-arm-lambda" / "bench" / "verify"
FIXTURE_MODULE = ROOT / "tests" / "fixtures" / "functions"

MAIN_GO = """package main

import (
	"context"
	"crypto/tls"
	"database/sql"
	_ "embed"
	"encoding/xml"
	"html/template"
	"net/http"

	"github.com/aws/aws-lambda-go/lambda"
)

//go:embed asset.bin
var asset []byte

func main() {
	_ = template.Must(template.New("t").Parse("{{.}}"))
	_ = http.DefaultClient
	_ = tls.Config{}
	_, _ = xml.Marshal(struct{}{})
	_ = sql.Drivers()
	lambda.Start(func(ctx context.Context) (int, error) { return len(asset), nil })
}
"""


def build_binary() -> Path:
    binary = WORK / "bigfn"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        sys.exit("go is not installed; this benchmark builds a real Go binary")
    module = WORK / "module"
    module.mkdir(parents=True, exist_ok=True)
    go_mod = (FIXTURE_MODULE / "go.mod").read_text().replace("example.com/fixtures", "example.com/bigfn")
    (module / "go.mod").write_text(go_mod)
    shutil.copy(FIXTURE_MODULE / "go.sum", module / "go.sum")
    (module / "main.go").write_text(MAIN_GO)
    # Incompressible, seeded: the size is real file bytes, and the binary is the same on every machine.
    (module / "asset.bin").write_bytes(random.Random(20).randbytes(14_000_000))
    env = proc.merged_env({"GOOS": "linux", "GOARCH": "arm64", "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false"})
    result = proc.run([go, "build", "-trimpath", "-tags", "lambda.norpc", "-o", binary, "."], cwd=module, env=env,
                      timeout=600)
    if not result.ok:
        sys.exit(f"go build failed:\n{result.stderr}")
    return binary


def median_ms(fn: Callable[[], None], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    binary = build_binary()
    size = binary.stat().st_size
    policy = Policy()
    report = read_binary(binary)
    assert report.go is not None and not report.problems, report.problems  # a real parse, not a short cut

    def verify() -> None:
        judge(read_binary(binary), policy)

    go = shutil.which("go") or "go"

    def go_version_m() -> None:
        assert proc.run([go, "version", "-m", binary], timeout=60).ok

    verify()  # warm the page cache and imports before timing either side
    go_version_m()
    ours = median_ms(verify, 21)
    theirs = median_ms(go_version_m, 7)
    print(f"binary: {binary} ({size / 1e6:.1f} MB{'' if size >= TARGET_BYTES else ', below the 20 MB target'})")
    print(f"verify (read_binary + judge), median of 21: {ours:8.2f} ms")
    print(f"go version -m, median of 7:                 {theirs:8.2f} ms")
    print(f"ratio verify / go version -m:               {ours / theirs:8.3f}")
    met = ours <= GOAL_MS
    print(f"goal: verify <= {GOAL_MS:.0f} ms: {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

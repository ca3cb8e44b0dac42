"""Start-up time of the inference path, each measured in a fresh Python process:

- import: ``import byel.api, byel.classifier`` (everything ``byel.load()`` imports);
- ``byel.load()``: ``import byel; byel.load()`` (the shipped model, on the CPU);
- one-photo CLI: ``byel predict tests/fixtures/photos/group.jpg --out TMP.csv --overwrite``
  (five faces: detection, crops, classification, the CSV);

best (and median) of --repeats runs each, the wall time of the whole process, and which of the
training libraries (Lightning, torchmetrics, kornia, matplotlib, scipy, sklearn) the load put in
sys.modules (none is needed to predict). The machine's load average before and after is recorded:
other load on the cores only ever slows a run down, hence the best of N.

    python benchmarks/start_time.py [--repeats 3] [--checkout DIR] [--json benchmarks/results/start_time.json]

``--checkout DIR``: time another byel checkout (its folder first on PYTHONPATH), e.g. an older
commit for a before/after comparison. Writes the JSON (with the run record) and the table as
Markdown next to it (.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, also when imported by a test
from common import commit, machine, run_record  # noqa: E402

from byel.cli.args import Parser, positive_int  # noqa: E402
from byel.cli.guard import run_guarded  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "tests" / "fixtures" / "photos" / "group.jpg"
TRAINING_ONLY = ("lightning", "torchmetrics", "kornia", "matplotlib", "scipy", "sklearn")
TARGET_S = {"byel.load()": 2.0, "one-photo CLI": 4.0}  # issue #29 item 5, on a 2-core machine

LOADED = ("import sys; print('LOADED', ' '.join(m for m in {names} "
          "if any(k == m or k.startswith(m + '.') for k in sys.modules)))")


def steps(out_csv: Path) -> dict[str, list[str]]:
    loaded = LOADED.format(names=repr(TRAINING_ONLY))
    return {
        "import": ["-c", "import byel.api, byel.classifier; " + loaded],
        "byel.load()": ["-c", "import byel; byel.load(); " + loaded],
        "one-photo CLI": ["-m", "byel", "predict", str(PHOTO), "--out", str(out_csv), "--overwrite"],
    }


def timed(args: list[str], checkout: Path) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(checkout), *filter(None, [os.environ.get("PYTHONPATH")])])}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=checkout, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    loaded = next((line.split()[1:] for line in done.stdout.splitlines() if line.startswith("LOADED")), None)
    return seconds, "" if loaded is None else (", ".join(loaded) or "none")


def main() -> None:
    ap = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=positive_int, default=3, help="runs per row; the table shows the best")
    ap.add_argument("--checkout", type=Path, default=ROOT, help="the byel checkout to time (default: this one)")
    ap.add_argument("--json", type=Path, default=Path("runs/start_time.json"))
    ap.add_argument("--note", default="", help="a line for the Markdown (e.g. which commit --checkout holds)")
    args = ap.parse_args()

    checkout = args.checkout.resolve()
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, cmd in steps(Path(tmp) / "x.csv").items():
            times, loaded = [], ""
            for _ in range(args.repeats):
                s, loaded = timed(cmd, checkout)
                times.append(s)
            rows.append({"step": name, "best_s": round(min(times), 2), "median_s": round(statistics.median(times), 2),
                         "runs_s": [round(t, 2) for t in times], "training_libraries_loaded": loaded or None})
            print(f"{name}: best {min(times):.2f} s of {', '.join(f'{t:.2f}' for t in times)}", flush=True)
    load_after = os.getloadavg()
    run = run_record(__file__)
    result = {"checkout": str(checkout), "note": args.note, "repeats": args.repeats, "rows": rows,
              "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in load_after], "run": run}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"Command: `{run['command']}`",
        "",
        f"{machine(run)}; commit {commit(run)}",
        *([f"checkout timed: {checkout}" + (f" ({args.note})" if args.note else "")] if checkout != ROOT else
          [args.note] if args.note else []),
        f"load average (1, 5, 15 min) before {', '.join(f'{x:.2f}' for x in load_before)}, "
        f"after {', '.join(f'{x:.2f}' for x in load_after)}",
        "",
        f"Wall time of a fresh process, best (median) of {args.repeats} runs",
        "",
        "| step | best s | median s | target | training libraries imported |",
        "|---|---|---|---|---|",
        *(f"| {r['step']} | {r['best_s']:.2f} | {r['median_s']:.2f} | "
          f"{'≤ %.0f s' % TARGET_S[r['step']] if r['step'] in TARGET_S else ''} | "
          f"{r['training_libraries_loaded'] or ''} |" for r in rows),
    ]
    md = "\n".join(lines) + "\n"
    args.json.with_suffix(".md").write_text(md)
    print("\n" + md + f"JSON: {args.json}")


if __name__ == "__main__":
    raise SystemExit(run_guarded(main))

"""benchmarks/main_job.py: the demo per seed, aggregated into a results table from the runs' own reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FER_SAMPLE = ROOT / "tests" / "fixtures" / "fer_sample"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "main_job.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_main_job_table_comes_from_the_demo_reports(tmp_path):
    p = _run("--real", str(FER_SAMPLE), "--seeds", "0", "1", "--runs", str(tmp_path / "runs"),
             "--out", str(tmp_path / "res"), "--", "--preset", "smoke", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((tmp_path / "res" / "results.json").read_text())
    assert [r["seed"] for r in res["runs"]] == [0, 1]
    md = (tmp_path / "res" / "results.md").read_text()
    for r in res["runs"]:
        ev = json.loads((tmp_path / "runs" / f"s{r['seed']}" / "report.json").read_text())["evaluation"]
        assert r["macro_f1"] == ev["macro_f1"] and r["adabn_macro_f1"] == ev["adabn"]["macro_f1"]
        assert f"| {r['seed']} | {ev['macro_f1']:.3f} | {ev['accuracy']:.3f} | {ev['adabn']['macro_f1']:.3f} |" in md
    f1 = np.array([r["macro_f1"] for r in res["runs"]])
    assert f"**{f1.mean():.3f} ± {f1.std(ddof=1):.3f}**" in md
    # A second call reuses the finished runs: same table, no new training.
    again = _run("--real", str(FER_SAMPLE), "--seeds", "0", "1", "--runs", str(tmp_path / "runs"),
                 "--out", str(tmp_path / "res"), "--", "--preset", "smoke", cwd=tmp_path)
    assert again.returncode == 0 and "byel demo" not in again.stderr
    assert (tmp_path / "res" / "results.md").read_text() == md


def test_main_job_missing_real_set_is_one_line(tmp_path):
    p = _run("--real", str(tmp_path / "nowhere"), "--seeds", "0", cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.count("error:") == 1 and "Traceback" not in p.stderr

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


def _fused_reports(runs: Path, tier_name: str, parts: dict) -> dict:
    """Write report.json of two fused-head demos (s0, s1) by hand, in the evaluation report's
    layout: fused macro-F1 0.40 / 0.30 (tier_name; +0.01 and B+C with AdaBN), and per part
    {name: ([plain per seed], AdaBN gain, tier, AdaBN tier)}. Returns the last evaluation."""
    tier = lambda name, geo=None: {"name": name, "face_geometry": geo}  # noqa: E731
    geo = {"head": "fused", "detection_rate": 0.9}
    for seed, fused in enumerate([0.40, 0.30]):
        ev = {"macro_f1": fused, "accuracy": 0.5, "n_images": 120, "per_class_f1": {}, "tier": tier(tier_name, geo),
              "adabn": {"macro_f1": fused + 0.01, "accuracy": 0.5, "n_adapt_images": 120, "tier": tier("B+C", geo)}}
        for name, (plain, gain, t, t_ada) in parts.items():
            ev[name] = {"macro_f1": plain[seed], "tier": tier(t)}
            ev["adabn"][name] = {"macro_f1": plain[seed] + gain, "tier": tier(t_ada)}
        (runs / f"s{seed}").mkdir(parents=True)
        (runs / f"s{seed}" / "report.json").write_text(json.dumps({"evaluation": ev, "seconds": {"total_s": 60.0}}))
    return ev


def test_a_fused_head_table_names_tier_b_and_lists_the_pixel_cnn_alone(tmp_path):
    """Reports of fused-head demos (written here by hand, in the evaluation report's layout): the
    table takes its tiers from them, B / B+C for the model, A / C for its pixel CNN alone."""
    ev = _fused_reports(tmp_path / "runs", "B", {"pixels_only": ([0.20, 0.24], 0.05, "A", "C")})
    p = _run("--real", str(FER_SAMPLE), "--seeds", "0", "1", "--runs", str(tmp_path / "runs"),
             "--out", str(tmp_path / "res"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    md = (tmp_path / "res" / "results.md").read_text()
    assert "| seed | macro-F1 (tier B) | accuracy | macro-F1 with AdaBN (tier B+C) |" in md
    assert "| 0 | 0.400 | 0.500 | 0.410 | 0.500 | 0.200 | 0.250 | 90.0% | 1.0 |" in md
    assert "**0.350 ± 0.071**" in md and "0.220 ± 0.028" in md and "Head: fused" in md
    assert f"--runs {tmp_path / 'runs'} --out {tmp_path / 'res'}" in md  # the command finds these runs again
    # a table never mixes kinds: a pixels-only run beside them is refused in one line
    ev["tier"], ev["adabn"]["tier"] = {"name": "A"}, {"name": "C"}
    del ev["pixels_only"]
    (tmp_path / "runs" / "s2").mkdir()
    (tmp_path / "runs" / "s2" / "report.json").write_text(json.dumps({"evaluation": ev, "seconds": {"total_s": 1}}))
    p = _run("--real", str(FER_SAMPLE), "--seeds", "0", "1", "2", "--runs", str(tmp_path / "runs"),
             "--out", str(tmp_path / "res"), cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.count("error:") == 1 and "different kinds" in p.stderr


def test_a_fused_table_lists_the_geometry_head_alone_with_the_tiers_of_the_reports(tmp_path):
    """A fused model trained on mesh faces (made of real faces): fused and geometry B+C, the pixel
    CNN C, as each report says; the geometry head alone gets its own two columns."""
    _fused_reports(tmp_path / "runs", "B+C", {"geometry_only": ([0.42, 0.34], 0.02, "B+C", "B+C"),
                                              "pixels_only": ([0.20, 0.24], 0.05, "C", "C")})
    p = _run("--real", str(FER_SAMPLE), "--seeds", "0", "1", "--runs", str(tmp_path / "runs"),
             "--out", str(tmp_path / "res"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    md = (tmp_path / "res" / "results.md").read_text()
    assert ("| seed | macro-F1 (tier B+C) | accuracy | macro-F1 with AdaBN (tier B+C) | accuracy with AdaBN | "
            "geometry head alone (tier B+C) | geometry head alone with AdaBN (tier B+C) | pixel CNN alone (tier C) | "
            "pixel CNN alone with AdaBN (tier C) | face mesh found | minutes |") in md
    assert "| 1 | 0.300 | 0.500 | 0.310 | 0.500 | 0.340 | 0.360 | 0.240 | 0.290 | 90.0% | 1.0 |" in md
    assert "| 0.380 ± 0.057 | 0.400 ± 0.057 | 0.220 ± 0.028 | 0.270 ± 0.028 | 90.0% |" in md
    assert "Tier A" not in md


def test_adapt_main_job_table_comes_from_the_evaluation_reports(tmp_path):
    """benchmarks/adapt_main_job.py on a smoke demo: `byel adapt` + `byel evaluate` per method, the
    unadapted model scored by the same `byel evaluate`; the table's numbers are the reports'."""
    runs = tmp_path / "runs"
    assert _run("--real", str(FER_SAMPLE), "--seeds", "0", "--runs", str(runs), "--out", str(tmp_path / "mj"),
                "--", "--preset", "smoke", cwd=tmp_path).returncode == 0
    script = str(ROOT / "benchmarks" / "adapt_main_job.py")
    argv = [sys.executable, script, "--real", str(FER_SAMPLE), "--seeds", "0", "--runs", str(runs),
            "--methods", "adabn", "tent", "--out", str(tmp_path / "res")]
    p = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    md = (tmp_path / "res" / "results.md").read_text()
    for method, tier in (("none", "A"), ("adabn", "C"), ("tent", "C")):
        ev = json.loads((runs / "adapt" / f"{method}-s0" / "eval.json").read_text())
        assert ev["tier"]["name"] == tier
        assert f"| {method} | {ev['macro_f1']:.3f} | {tier} |" in md
    assert json.loads((runs / "adapt" / "tent-s0" / "adapt.json").read_text())["method"] == "tent"
    # a second call redoes nothing
    again = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "byel adapt" not in again.stderr and "byel evaluate" not in again.stderr
    assert (tmp_path / "res" / "results.md").read_text() == md

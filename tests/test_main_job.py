"""benchmarks/main_job.py: the demo per seed, aggregated into a results table from the runs' own reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # subprocess runs of the benchmark scripts (and of the demo)

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
    assert res["command"] == (f"python benchmarks/main_job.py --real {FER_SAMPLE} --seeds 0 1 --runs {tmp_path / 'runs'} "
                              f"--out {tmp_path / 'res'} -- --preset smoke")
    for r in res["runs"]:
        ev = json.loads((tmp_path / "runs" / f"s{r['seed']}" / "report.json").read_text())["evaluation"]
        assert (r["macro_f1"], r["accuracy"], r["adabn_macro_f1"], r["adabn_accuracy"], r["per_class_f1"]) == \
            (ev["macro_f1"], ev["accuracy"], ev["adabn"]["macro_f1"], ev["adabn"]["accuracy"], ev["per_class_f1"])
        assert (r["tier"], r["adabn_tier"], r["n_images"], r["n_adapt_images"]) == ("A", "C", 120, 120)
    assert res["command"] in (tmp_path / "res" / "results.md").read_text()  # the table names its command
    # A second call reuses the finished runs: same table, no new training.
    again = _run("--real", str(FER_SAMPLE), "--seeds", "0", "1", "--runs", str(tmp_path / "runs"),
                 "--out", str(tmp_path / "res"), "--", "--preset", "smoke", cwd=tmp_path)
    assert again.returncode == 0 and "byel demo" not in again.stderr
    assert json.loads((tmp_path / "res" / "results.json").read_text()) == res


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
    res = json.loads((tmp_path / "res" / "results.json").read_text())
    assert [(r["seed"], r["tier"], r["adabn_tier"], r["head"], r["mesh_rate"]) for r in res["runs"]] == \
        [(0, "B", "B+C", "fused", 0.9), (1, "B", "B+C", "fused", 0.9)]
    assert [v for r in res["runs"] for v in (r["macro_f1"], r["adabn_macro_f1"])] == pytest.approx([0.40, 0.41, 0.30, 0.31])
    assert [r["pixels_only"] for r in res["runs"]] == [  # the pixel CNN alone, with its own tiers
        {"macro_f1": 0.20, "tier": "A", "adabn_macro_f1": pytest.approx(0.25), "adabn_tier": "C"},
        {"macro_f1": 0.24, "tier": "A", "adabn_macro_f1": pytest.approx(0.29), "adabn_tier": "C"}]
    assert all("geometry_only" not in r for r in res["runs"])
    assert res["command"].endswith(f"--runs {tmp_path / 'runs'} --out {tmp_path / 'res'}")  # it finds these runs again
    assert res["command"] in (tmp_path / "res" / "results.md").read_text()
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
    res = json.loads((tmp_path / "res" / "results.json").read_text())
    r = res["runs"][1]
    assert (r["seed"], r["tier"], r["adabn_tier"], r["head"], r["mesh_rate"]) == (1, "B+C", "B+C", "fused", 0.9)
    assert (r["macro_f1"], r["accuracy"], r["adabn_macro_f1"], r["adabn_accuracy"]) == pytest.approx((0.30, 0.5, 0.31, 0.5))
    assert r["geometry_only"] == {"macro_f1": 0.34, "tier": "B+C", "adabn_macro_f1": pytest.approx(0.36), "adabn_tier": "B+C"}
    assert r["pixels_only"] == {"macro_f1": 0.24, "tier": "C", "adabn_macro_f1": pytest.approx(0.29), "adabn_tier": "C"}
    tiers = {t for x in res["runs"] for t in (x["tier"], x["adabn_tier"], *(x[v][k] for v in ("geometry_only", "pixels_only")
                                                                            for k in ("tier", "adabn_tier")))}
    assert tiers == {"B+C", "C"}  # no tier A anywhere
    assert res["command"] in (tmp_path / "res" / "results.md").read_text()


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
    res = json.loads((tmp_path / "res" / "results.json").read_text())
    assert [(r["seed"], r["method"]) for r in res["runs"]] == [(0, "none"), (0, "adabn"), (0, "tent")]
    for r, tier in zip(res["runs"], ("A", "C", "C")):
        ev = json.loads((runs / "adapt" / f"{r['method']}-s0" / "eval.json").read_text())
        assert ev["tier"]["name"] == r["tier"] == tier and r["macro_f1"] == ev["macro_f1"]
    assert res["command"] in (tmp_path / "res" / "results.md").read_text()  # the table names its command
    assert json.loads((runs / "adapt" / "tent-s0" / "adapt.json").read_text())["method"] == "tent"
    # a second call redoes nothing
    again = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "byel adapt" not in again.stderr and "byel evaluate" not in again.stderr
    assert json.loads((tmp_path / "res" / "results.json").read_text()) == res


@pytest.mark.slow
def test_adapt_main_job_on_a_pool_reuses_the_demos_own_adaptation(tmp_path):
    """`--data POOL`: every method adapts on the pool's images (not the scored ones); a demo run with
    `--unlabelled POOL` already holds its self-training, which is reused, not run again."""
    runs, pool = tmp_path / "runs", FER_SAMPLE / "angry"  # 20 real faces as the unlabelled pool
    assert _run("--real", str(FER_SAMPLE), "--seeds", "0", "--runs", str(runs), "--out", str(tmp_path / "mj"),
                "--", "--preset", "smoke", "--unlabelled", str(pool), cwd=tmp_path).returncode == 0
    assert json.loads((runs / "s0" / "adapt" / "adapt.json").read_text())["method"] == "self-train"
    script = str(ROOT / "benchmarks" / "adapt_main_job.py")
    p = subprocess.run([sys.executable, script, "--real", str(FER_SAMPLE), "--seeds", "0", "--runs", str(runs),
                        "--methods", "self-train", "adabn", "--data", str(pool), "--out", str(tmp_path / "res")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stderr.count("-m byel adapt ") == 1  # adabn only: the demo's self-training is reused
    res = json.loads((tmp_path / "res" / "results.json").read_text())
    assert [(r["method"], r.get("n_adapt_images")) for r in res["runs"]] == [("none", None), ("self-train", 20),
                                                                              ("adabn", 20)]
    assert all(r["tier"] == "C" for r in res["runs"])  # the pool was in stage 1 already: every row is C
    assert f"--data {pool}" in res["command"] and "n = 20" in (tmp_path / "res" / "results.md").read_text()


def test_adapt_main_job_views_give_one_co_train_row_each():
    """--views 2 3: co-train once per number of views, each in its own folder and row; the other
    methods (and co-train without --views) keep their names; --rounds and --share are named in the
    rows of the methods that take them."""
    import argparse
    import importlib.util

    spec = importlib.util.spec_from_file_location("adapt_main_job", ROOT / "benchmarks" / "adapt_main_job.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    args = argparse.Namespace(methods=["self-train", "co-train"], views=[2, 3])
    assert mod.variants(args) == [("self-train", "self-train", []), ("co-train-2-views", "co-train", ["--views", "2"]),
                                  ("co-train-3-views", "co-train", ["--views", "3"])]
    args.views = None
    assert mod.variants(args) == [("self-train", "self-train", []), ("co-train", "co-train", [])]
    # --rounds / --share go to the methods in rounds, and into their rows' names; adabn takes neither
    args = argparse.Namespace(methods=["adabn", "self-train", "co-train"], views=[3], rounds=4, share=0.8)
    assert mod.variants(args) == [
        ("adabn", "adabn", []), ("self-train-rounds-4-share-0.8", "self-train", ["--rounds", "4", "--share", "0.8"]),
        ("co-train-3-views-rounds-4-share-0.8", "co-train", ["--views", "3", "--rounds", "4", "--share", "0.8"])]

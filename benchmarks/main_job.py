"""The main job over seeds: `byel demo` (generate → BYEL pre-train → fine-tune → evaluate on real
faces) once per seed, then one table of plain and AdaBN macro-F1 (mean ± std) and stage times.

    python benchmarks/main_job.py --real ../shared/data/fer2013-publictest --seeds 0 1 2

Writes OUT/results.json and OUT/results.md (default OUT: benchmarks/results/main_job) and keeps
every run under --runs (default runs/main-job/s<seed>); a seed whose report exists is not rerun.
Tiers come from each run's evaluation report: the plain score of a pixel model is tier A
(synthetic pixels only), its AdaBN score tier C (BatchNorm statistics from the evaluated images
without their labels, transductive); with `-- --head fused|geometry` the model's own scores are
tier B / B+C and its geometry head's and pixel CNN's alone are listed beside them, each with the
tiers its report gives (trained on warp or mesh faces, made of real faces: B+C and C).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, also when imported by a test
from common import commit, machine, mean_std, run_record  # noqa: E402

from byel.cli.args import Parser, seed_int  # noqa: E402
from byel.cli.guard import run_guarded  # noqa: E402
from byel.errors import ByelError, StepFailed  # noqa: E402


DEFAULTS = {"runs": "runs/main-job", "out": "benchmarks/results/main_job"}
# The parts of a geometry or fused model that its evaluation report also scores alone.
VIEWS = {"geometry_only": "geometry head alone", "pixels_only": "pixel CNN alone"}


def main(argv=None) -> int:
    p = Parser(prog="main_job.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--real", required=True, help="labelled real faces (a data spec)")
    p.add_argument("--seeds", type=seed_int, nargs="+", default=[0, 1, 2])
    p.add_argument("--runs", default=DEFAULTS["runs"], help="one demo run folder per seed below this")
    p.add_argument("--out", default=DEFAULTS["out"])
    p.add_argument("demo_args", nargs=argparse.REMAINDER, help="after --: extra `byel demo` options")
    args = p.parse_args(argv)
    return run_guarded(lambda: run(args, argv))


def run(args, argv: list[str] | None = None) -> int:
    if not Path(args.real.split(":", 1)[-1]).exists():
        raise ByelError(f"--real {args.real}: not found")
    extra = [a for a in args.demo_args if a != "--"]
    rows = []
    for seed in args.seeds:
        run_dir = Path(args.runs) / f"s{seed}"
        report = run_dir / "report.json"
        if not report.exists():
            # --resume: a seed's demo that was interrupted continues (a fresh folder just starts)
            cmd = [sys.executable, "-m", "byel", "demo", "--real", args.real, "--adapt-bn", "--seed", str(seed),
                   "--out", str(run_dir), "--resume", "--no-progress", *extra]
            print("$", " ".join(cmd), file=sys.stderr, flush=True)
            rc = subprocess.call(cmd)
            if rc != 0:
                raise StepFailed(f"the demo for seed {seed} failed (above); fix it and run this again", rc)
        r = json.loads(report.read_text())
        ev = r["evaluation"]
        row = {"seed": seed, "macro_f1": ev["macro_f1"], "accuracy": ev["accuracy"],
               "adabn_macro_f1": ev["adabn"]["macro_f1"], "adabn_accuracy": ev["adabn"]["accuracy"],
               "n_images": ev["n_images"], "n_adapt_images": ev["adabn"].get("n_adapt_images"),
               "per_class_f1": ev["per_class_f1"], "seconds": r["seconds"],
               # reports written before tiers were recorded are pixel models: A, and C with AdaBN
               "tier": ev.get("tier", {}).get("name", "A"), "adabn_tier": ev["adabn"].get("tier", {}).get("name", "C")}
        if "pixels_only" in ev:  # a geometry or fused head: its parts alone too, each with its own tiers
            geo = ev["tier"]["face_geometry"]
            row.update(head=geo["head"], mesh_rate=geo["detection_rate"],
                       no_mesh=geo.get("no_mesh", "classified by the pixel CNN"))
            for view in VIEWS:
                if view in ev:
                    row[view] = {"macro_f1": ev[view]["macro_f1"], "tier": ev[view]["tier"]["name"],
                                 "adabn_macro_f1": ev["adabn"][view]["macro_f1"],
                                 "adabn_tier": ev["adabn"][view]["tier"]["name"]}
        rows.append(row)
    kinds = {(r["tier"], r["adabn_tier"], *((v, r[v]["tier"], r[v]["adabn_tier"]) for v in VIEWS if v in r),
              r.get("no_mesh")) for r in rows}
    if len(kinds) != 1:
        raise ByelError(f"the runs under {args.runs} are of different kinds (tiers, faces without a mesh "
                        f"{sorted(kinds, key=str)}): one kind per table")
    tier, adabn_tier = rows[0]["tier"], rows[0]["adabn_tier"]
    views = [v for v in VIEWS if v in rows[0]]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/main_job.py --real " + args.real + " --seeds " + " ".join(map(str, args.seeds)) \
        + "".join(f" --{k} {v}" for k, v in (("runs", args.runs), ("out", args.out)) if v != DEFAULTS[k]) \
        + (" -- " + " ".join(extra) if extra else "")
    record = run_record(__file__, argv)  # the command as typed, machine, versions, git commit
    f1 = [r["macro_f1"] for r in rows]
    ada = [r["adabn_macro_f1"] for r in rows]
    view_head = "".join(f" {VIEWS[v]} (tier {rows[0][v]['tier']}) | {VIEWS[v]} with AdaBN (tier {rows[0][v]['adabn_tier']}) |"
                        for v in views) + (" face mesh found |" if views else "")
    lines = [
        f"Command: `{command}`  ",
        f"Machine: {machine(record)}  ",
        f"Commit: {commit(record)}  ",
        f"Real faces: {args.real}, {rows[0]['n_images']} images scored; chance macro-F1 0.167.",
        "",
        f"| seed | macro-F1 (tier {tier}) | accuracy | macro-F1 with AdaBN (tier {adabn_tier}) | accuracy with AdaBN |"
        + view_head + " minutes |",
        "|---|---|---|---|---|" + "---|" * (2 * len(views) + bool(views)) + "---|",
    ]

    def view_cells(r: dict | None) -> str:
        """The parts' columns of one row (r) or of the mean ± std row (None)."""
        if not views:
            return ""
        rs = rows if r is None else [r]
        cells = [mean_std([x[v][k] for x in rs]) for v in views for k in ("macro_f1", "adabn_macro_f1")]
        return "".join(f" {c} |" for c in cells) + f" {np.mean([x['mesh_rate'] for x in rs]):.1%} |"

    for r in rows:
        lines.append(f"| {r['seed']} | {r['macro_f1']:.3f} | {r['accuracy']:.3f} | {r['adabn_macro_f1']:.3f} | "
                     f"{r['adabn_accuracy']:.3f} |{view_cells(r)} {r['seconds']['total_s'] / 60:.1f} |")
    minutes = [r["seconds"]["total_s"] / 60 for r in rows]
    lines.append(f"| **mean ± std** | **{mean_std(f1)}** | {mean_std([r['accuracy'] for r in rows])} | "
                 f"**{mean_std(ada)}** | {mean_std([r['adabn_accuracy'] for r in rows])} |{view_cells(None)} "
                 f"{np.mean(minutes):.1f} |")
    from byel.provenance import LABELS

    tiers = [tier, adabn_tier, *(rows[0][v][k] for v in views for k in ("tier", "adabn_tier"))]
    lines += ["", " ".join(f"{LABELS[t].replace('tier ', 'Tier ', 1)}." for t in dict.fromkeys(tiers))
              + f" AdaBN: BatchNorm statistics re-estimated on the {rows[0]['n_adapt_images']} evaluated real images "
              "without their labels (transductive)."]
    if views:
        lines.append(f"Head: {rows[0]['head']} (face geometry where a mesh is found; faces without one are "
                     f"{rows[0]['no_mesh']}); the geometry head alone: the same with fusion weight 1.")
    from byel.files import write_text

    write_text(out / "results.md", "\n".join(lines) + "\n")  # whole files or none
    write_text(out / "results.json", json.dumps({"command": command, "machine": machine(record), "run": record,
                                                 "real": args.real, "runs": rows}, indent=2))
    print("\n".join(lines))
    print(f"\nresults: {out / 'results.md'}, {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Label-free adaptation of the main job's models, over seeds: `byel adapt` (each method) on the
real faces without their labels, then `byel evaluate` of the adapted checkpoint; one table of
macro-F1 (mean ± std) per method, the unadapted model first.

    python benchmarks/main_job.py --real ../shared/data/fer2013-publictest --seeds 0 1 2 \
        --runs runs/main-job-fused --out benchmarks/results/main_job_fused -- --head fused
    python benchmarks/adapt_main_job.py --real ../shared/data/fer2013-publictest --seeds 0 1 2 \
        --runs runs/main-job-fused --methods adabn self-train co-train

Reads each seed's demo run (RUNS/s<seed>: its fine-tuned checkpoint, its synthetic faces for the
methods that mix them in); writes every adapted run under RUNS/adapt/<row>-s<seed> (the row: the
method, with co-train's --views and the --rounds / --share given, e.g.
co-train-3-views-rounds-4-share-0.8) and the
unadapted model's scores under RUNS/adapt/none-s<seed> (what exists is not redone) and OUT/results.json and
OUT/results.md (default OUT: benchmarks/results/adapt_main_job). Tiers come from the reports: the
adaptation images are real (tier C); a geometry or fused head adds B, and a fused head's geometry head and pixel CNN alone are
listed beside it (co-train's CNN learned from the geometry view's labels: B+C).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, also when imported by a test
from common import commit, machine, mean_std, run_record  # noqa: E402

from byel.adapt import METHODS, SYNTHETIC  # noqa: E402
from byel.adapt.common import DEFAULTS as ADAPT_DEFAULTS  # noqa: E402
from byel.cli.args import Parser, int_range, prob_float, seed_int  # noqa: E402
from byel.cli.guard import run_guarded  # noqa: E402
from byel.errors import ByelError, StepFailed  # noqa: E402

DEFAULTS = {"runs": "runs/main-job", "out": "benchmarks/results/adapt_main_job"}
# The methods in rounds of pseudo-labels: those whose defaults have rounds and a share.
IN_ROUNDS = tuple(m for m, d in ADAPT_DEFAULTS.items() if {"rounds", "share"} <= d.keys())


def main(argv=None) -> int:
    p = Parser(prog="adapt_main_job.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--real", required=True, help="the real faces: adapted on without labels, then scored")
    p.add_argument("--seeds", type=seed_int, nargs="+", default=[0, 1, 2])
    p.add_argument("--runs", default=DEFAULTS["runs"], help="the main job's runs (s<seed> below it)")
    p.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=["adabn", "self-train"])
    p.add_argument("--data", help="the unlabelled images every method adapts on (default: --real's own, "
                                  "transductive), e.g. ../shared/data/fer2013-train-unlabelled")
    p.add_argument("--views", type=int, nargs="+", choices=(2, 3),
                   help="co-train: one row per number of views (byel adapt --views; 3 needs models fine-tuned "
                        "with --set finetune.no_mesh=activations); default: every view the model has")
    p.add_argument("--rounds", type=int_range(1, 1000), metavar="N",
                   help=f"{' and '.join(IN_ROUNDS)}: byel adapt --rounds (default: the method's, 2); named in their rows")
    p.add_argument("--share", type=prob_float, metavar="X",
                   help=f"{' and '.join(IN_ROUNDS)}: byel adapt --share (default: the method's, 0.5); named in their rows")
    p.add_argument("--out", default=DEFAULTS["out"])
    args = p.parse_args(argv)
    return run_guarded(lambda: run(args, argv))


def _byel(*argv: str) -> None:
    cmd = [sys.executable, "-m", "byel", *argv, "--no-progress"]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    rc = subprocess.call(cmd)
    if rc != 0:
        raise StepFailed(f"`byel {argv[0]}` failed (above); fix it and run this again", rc)


PARTS = (("geometry_only", "geometry head alone"), ("pixels_only", "pixel CNN alone"))  # a fused model's own heads


def _scores(ev: dict) -> dict:
    """The model's macro-F1 and tier, and those of its geometry head and pixel CNN alone when
    it has a geometry head (byel evaluate's report)."""
    row = {"macro_f1": ev["macro_f1"], "tier": ev["tier"]["name"]}
    for part, _ in PARTS:
        if part in ev:
            row.update({f"{part}_macro_f1": ev[part]["macro_f1"], f"{part}_tier": ev[part]["tier"]["name"]})
    return row


def _demo_adapted(src: Path, method: str, data: str) -> bool:
    """Whether the demo in `src` (`byel demo --unlabelled DATA`) adapted its fine-tuned model with
    `method` on `data`'s images (its adapt/adapt.json: the same method and data folder)."""
    try:
        record = json.loads((src / "adapt" / "adapt.json").read_text())
    except (OSError, ValueError):
        return False
    return (record.get("method") == method and (src / "adapt" / "checkpoints/adapted.ckpt").is_file()
            and record.get("data_resolved", "").split(":", 1)[-1] == str(Path(data.split(":", 1)[-1]).resolve()))


def _in_rounds(args) -> dict[str, str]:
    """--rounds and --share where given, as written on the command line (for the methods in rounds)."""
    return {k: f"{getattr(args, k):g}" for k in ("rounds", "share") if getattr(args, k, None) is not None}


def variants(args) -> list[tuple[str, str, list[str]]]:
    """(row name and folder stem, byel adapt method, its extra options) of each adaptation asked for:
    co-train once per --views value; --rounds and --share, where given, in the name of the rows of
    the methods that take them."""
    out = []
    for method in args.methods:
        given = _in_rounds(args) if method in IN_ROUNDS else {}
        tag = "".join(f"-{k}-{v}" for k, v in given.items())
        more = [x for k, v in given.items() for x in (f"--{k}", v)]
        if method == "co-train" and args.views:
            out += [(f"co-train-{v}-views{tag}", method, ["--views", str(v), *more]) for v in args.views]
        else:
            out.append((method + tag, method, more))
    return out


def run(args, argv: list[str] | None = None) -> int:
    if not Path(args.real.split(":", 1)[-1]).exists():
        raise ByelError(f"--real {args.real}: not found")
    runs = Path(args.runs)
    for seed in args.seeds:
        for need in ("report.json", "finetune/checkpoints/best.ckpt", "synthetic"):
            if not (runs / f"s{seed}" / need).exists():
                raise ByelError(f"{runs / f's{seed}' / need} not found: run benchmarks/main_job.py "
                                f"--seeds {seed} --runs {runs} first")
    if args.data and not Path(args.data.split(":", 1)[-1]).exists():
        raise ByelError(f"--data {args.data}: not found")
    data = args.data or args.real
    rows = []
    for seed in args.seeds:
        src = runs / f"s{seed}"
        best = src / "finetune/checkpoints/best.ckpt"
        for name, method, more in [("none", "none", []), *variants(args)]:
            out = runs / "adapt" / f"{name}-s{seed}"
            ckpt = best if method == "none" else out / "checkpoints/adapted.ckpt"
            made = out  # the folder of the adaptation's adapt.json
            if method != "none" and not more and not ckpt.exists() and _demo_adapted(src, method, data):
                made = src / "adapt"  # `byel demo --unlabelled DATA` ran this very adaptation: reused
                ckpt = made / "checkpoints/adapted.ckpt"
            if not ckpt.exists():
                _byel("adapt", "--checkpoint", str(best), "--data", data, "--method", method, "--out", str(out),
                      "--overwrite", *(["--synthetic", str(src / "synthetic")] if method in SYNTHETIC else []), *more)
            if not (out / "eval.json").exists():  # every row scored by the same `byel evaluate`
                _byel("evaluate", "--checkpoint", str(ckpt), "--data", args.real, "--report", str(out / "eval.json"))
            row = {"seed": seed, "method": name, **_scores(json.loads((out / "eval.json").read_text()))}
            if method != "none":
                record = json.loads((made / "adapt.json").read_text())
                row.update(n_adapt_images=record.get("n_images"), adapt_s=record.get("seconds"))
            rows.append(row)
    table = write(rows, args, run_record(__file__, argv))
    print(table)
    print(f"\nresults: {Path(args.out) / 'results.md'}, {Path(args.out) / 'results.json'}")
    return 0


def write(rows: list[dict], args, record: dict) -> str:
    """OUT/results.md and OUT/results.json; `record`: the run record (common.run_record)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = ("python benchmarks/adapt_main_job.py --real " + args.real + " --seeds " + " ".join(map(str, args.seeds))
               + " --methods " + " ".join(args.methods) + (f" --data {args.data}" if args.data else "")
               + (" --views " + " ".join(map(str, args.views)) if args.views else "")
               + "".join(f" --{k} {v}" for k, v in _in_rounds(args).items())
               + "".join(f" --{k} {v}" for k, v in (("runs", args.runs), ("out", args.out)) if v != DEFAULTS[k]))
    parts = [(part, name) for part, name in PARTS if f"{part}_macro_f1" in rows[0]]
    lines = [f"Command: `{command}`  ", f"Machine: {machine(record)}  ", f"Commit: {commit(record)}  ",
             (f"Real faces: {args.real}; every adaptation reads all of its images without labels (transductive: "
              "the scored images are among them)" if not args.data else
              f"Real faces: {args.real}; every adaptation reads the images of {args.data} without labels (n = "
              f"{rows[-1].get('n_adapt_images')}; each evaluation report checks image by image whether any scored image "
              "is among them)")
             + "; chance macro-F1 0.167; adaptation minutes per run.", "",
             "| adaptation | macro-F1 | tier |" + "".join(f" {name} | tier |" for _, name in parts)
             + " macro-F1 per seed | minutes | runs |",
             "|---|---|---|" + "---|---|" * len(parts) + "---|---|---|"]
    for method in ["none", *(name for name, _, _ in variants(args))]:
        mine = [r for r in rows if r["method"] == method]
        keys = ["tier", *(f"{part}_tier" for part, _ in parts)]
        tiers = {tuple(r.get(k) for k in keys) for r in mine}
        if len(tiers) != 1:
            raise ByelError(f"the {method} runs are of different tiers {sorted(tiers)}: one kind per table")
        (tier, *part_tiers), = tiers
        cells = [mean_std([r["macro_f1"] for r in mine]), tier]
        for (part, _), t in zip(parts, part_tiers):
            cells += [mean_std([r[f"{part}_macro_f1"] for r in mine]), t]
        per_seed = " / ".join(f"{r['macro_f1']:.3f}" for r in mine)
        minutes = f"{sum(r['adapt_s'] for r in mine) / len(mine) / 60:.1f}" if method != "none" else "—"
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {per_seed} | {minutes} | {len(mine)} |")
    from byel.provenance import LABELS

    used = dict.fromkeys(r[k] for r in rows for k in r if k == "tier" or k.endswith("_tier"))
    lines += ["", " ".join(f"{LABELS[t].replace('tier ', 'Tier ', 1)}." for t in used)]
    from byel.files import write_text

    write_text(out / "results.md", "\n".join(lines) + "\n")  # whole files or none
    write_text(out / "results.json", json.dumps({"command": command, "machine": machine(record), "run": record,
                                                 "real": args.real, "runs": rows}, indent=2))
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

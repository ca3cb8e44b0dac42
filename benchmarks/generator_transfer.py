"""Transfer of each generator backend to real faces: the same small supervised model, trained on
the same number of synthetic images with the same budget, scored on real labelled faces
without and with real-domain BatchNorm adaptation (AdaBN, byel.adapt: on the scored real images
without their labels, or on the unlabelled images of --adapt-bn SPEC).

    python benchmarks/generator_transfer.py --real ../shared/data/fer2013-publictest \
        --sources ../shared/data/fer2013-train-neutral --per-class 600 --epochs 8 --seeds 0

`--backends mix` trains on --per-class faces from each backend together (twice the images).
Prints a markdown table and writes OUT/results.json and OUT/results.md (with the command); each
run also keeps OUT/<backend>-s<seed>/result.json, and a later call with the same settings reads
finished runs back (e.g. to add seeds). Every score says its tier (byel.provenance):
procedural faces are tier A; warp faces are made of real unlabelled neutral faces (--sources), so
a model trained on them is tier C (which folder, how many of its faces), and AdaBN is tier C.
Training uses byel's own fine-tuning code from scratch (no stage 1), model selection on a
held-out synthetic split: no real label is used except for the final scores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, also when imported by a test
from common import command_line, commit, mean_std, run_record  # noqa: E402

from byel.cli.args import Bounded, Parser  # noqa: E402
from byel.cli.guard import run_guarded  # noqa: E402
from byel.config import NORMALIZERS, GenerateConfig, load_config  # noqa: E402
from byel.data.sources import load  # noqa: E402
from byel.data.split import holdout_split  # noqa: E402
from byel.errors import ConfigError  # noqa: E402
from byel.adapt import adaptation_set  # noqa: E402
from byel.provenance import LABELS  # noqa: E402
from byel import classifier  # noqa: E402
from byel.evaluate import score  # noqa: E402
from byel.metrics import METRIC_DEFINITION  # noqa: E402
from byel.pipeline import synthetic_data, train_chain  # noqa: E402
from byel.choices import BACKENDS, FROM_REAL  # noqa: E402


def make_data(backend: str, args, seed: int, out: Path):
    """Generate --per-class faces per class with one backend ("mix": with each of the two, and
    train on both sets together) and load them. Returns (train, held-out) as (images, labels)
    pairs, the held-out split grouped by source face (warp) as `byel demo` does, the split
    records, the generation speed and the real images the faces are made of (warp: its sources)."""
    parts, infos, rates, uses = [], [], [], []
    for b in ("procedural", "warp") if backend == "mix" else (backend,):
        folder = out / ("data" if backend != "mix" else f"data-{b}")
        data, gen = synthetic_data(folder, GenerateConfig(backend=b, per_class=args.per_class, grey=args.grey,
                                                          sources=args.sources if b in FROM_REAL else None,
                                                          warp_strength=args.warp_strength, workers=args.workers),
                                   size=args.size, seed=seed)
        tr, va, info = holdout_split(data, args.val_fraction, seed)
        parts.append((data.images[tr], data.labels[tr], data.images[va], data.labels[va]))
        infos.append({k: v for k, v in info.items() if k not in ("held_out_files", "held_out_groups")})
        rates.append(gen["images_per_s"])
        uses += data.real_uses
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    val = (np.concatenate([p[2] for p in parts]), np.concatenate([p[3] for p in parts]))
    return train, val, infos, float(np.mean(rates)), uses


# The options a run's result depends on: a finished run with the same ones is reused.
SETTINGS = ("real", "sources", "per_class", "size", "epochs", "lr", "preset", "normalize", "adapt_bn",
            "val_fraction", "grey", "warp_strength")
RESULT = "result.json"


def run(backend: str, args, seed: int, real, adapt: tuple[np.ndarray, dict], record: dict) -> dict:
    """One backend and seed: generate, train, score. A finished run of the same settings in
    OUT/<backend>-s<seed> is read back instead (so more seeds can be added later). `record`: this
    invocation's run record (common.run_record), kept with the rows it makes."""
    out = Path(args.out) / f"{backend}-s{seed}"
    settings = {k: getattr(args, k) for k in SETTINGS}
    done = out / RESULT
    if done.exists():
        r = json.loads(done.read_text())
        if r.get("settings") == settings:
            return {**r, "reused": True}
    r = train_and_score(backend, args, seed, real, adapt, out)
    r["settings"] = settings
    r["run"] = record  # what made this row: command, machine, versions, git commit
    tmp = done.with_name(RESULT + ".tmp")
    tmp.write_text(json.dumps(r, indent=1))
    tmp.replace(done)
    return r


def train_and_score(backend: str, args, seed: int, real, adapt: tuple[np.ndarray, dict], out: Path) -> dict:
    t0 = time.time()
    (images, labels), val, split, rate, uses = make_data(backend, args, seed, out)
    cfg = load_config(args.preset, {
        "seed": seed, "finetune.epochs": args.epochs, "finetune.lr": args.lr, "finetune.dropout": 0.3,
        "trainer.progress": False, "trainer.logger": "none", "data.image_size": args.size,
        "aug.normalize": args.normalize,
    })
    _, best = train_chain(cfg, (images, labels), val, None, out / "model", generator_sources=uses)  # no stage 1
    # tiers as byel evaluate reads them (the checkpoint's record: the warp faces' sources)
    plain = score(classifier.load(best), real.images, real.labels, adabn=adapt)
    adapted = plain["adabn"]
    return {"backend": backend, "seed": seed, "n_train": int(len(labels)), "normalize": args.normalize,
            "generate_images_per_s": round(rate, 1), "held_out": split,
            "macro_f1": plain["macro_f1"], "accuracy": plain["accuracy"], "per_class_f1": plain["per_class_f1"],
            "confusion_matrix": plain["confusion_matrix"],
            "adabn_macro_f1": adapted["macro_f1"], "adabn_accuracy": adapted["accuracy"],
            "adabn_per_class_f1": adapted["per_class_f1"], "adabn_confusion_matrix": adapted["confusion_matrix"],
            "adabn": adapt[1], "tier": plain["tier"], "adabn_tier": adapted["tier"],
            "metric_definition": METRIC_DEFINITION, "seconds": round(time.time() - t0, 1)}


def tier_note(results: list[dict]) -> str:
    """One line: what tiers the table's rows are, and for warp rows which real faces they are made of."""
    counts: dict[str, set[int]] = {}  # per source folder: how many of its faces each run's data shows
    for r in results:
        for u in r["tier"]["unlabelled_real"]:
            if u["stage"] == "generate":
                counts.setdefault(u["data"], set()).add(u["n_images"])
    warp = [(f"{min(n)} faces" if len(n) == 1 else f"{min(n)}–{max(n)} faces (per run)") + f" of {data}"
            for data, n in sorted(counts.items())]
    plain_a = any(r["tier"]["name"] == "A" for r in results)
    return ((f"{LABELS['A']}: the plain scores of the procedural rows. " if plain_a else "")
            + f"{LABELS['C']}: " + (f"every score of the warp, mesh and mix rows (their faces are made from "
                                    f"{'; '.join(warp)}) and " if warp else "")
            + "every AdaBN score (BatchNorm statistics of unlabelled real images).")


def main() -> None:
    ap = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", required=True, help="labelled real faces (class folders)")
    ap.add_argument("--sources", help="unlabelled neutral faces for the warp backend (warp and mix need it; without it the default measures procedural only)")
    ap.add_argument("--backends", nargs="+", choices=[*BACKENDS, "mix"],
                    help="default: procedural, and warp when --sources is given; "
                         "mix: --per-class faces from each backend, trained on together")
    ap.add_argument("--per-class", type=int, default=600)
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=8, help="fine-tuning epochs (8: most README rows; warp gains up to 16)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--preset", default="cpu-demo")
    ap.add_argument("--normalize", default="dataset", choices=list(NORMALIZERS),
                    help="input normalisation (default dataset: the README table's; cpu-demo itself now uses equalize)")
    ap.add_argument("--adapt-bn", metavar="SPEC",
                    help="AdaBN on the unlabelled images of SPEC (default: the scored --real images without their labels)")
    ap.add_argument("--val-fraction", type=Bounded(float, 0.0, 0.9, lo_open=True), default=0.1,
                    help="synthetic images held out (whole source faces) to choose the best epoch")
    ap.add_argument("--grey", action="store_true")
    ap.add_argument("--warp-strength", type=float, default=GenerateConfig.warp_strength, help="multiple of the FACS displacement magnitudes")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--out", default="runs/bench-transfer")
    args = ap.parse_args()
    backends = args.backends or ["procedural"] + (["warp"] if args.sources else [])
    if {*FROM_REAL, "mix"} & set(backends) and not args.sources:
        raise ConfigError("the warp, mesh and mix backends need --sources DIR (neutral faces)")

    record = run_record(__file__)
    real = load(args.real, args.size, progress=False)
    adapt = adaptation_set(args.adapt_bn, real.images, args.size)  # the scored images, labels unused, by default
    results = []
    for backend in backends:
        for seed in args.seeds:
            r = run(backend, args, seed, real, adapt, record)
            where = f", read back from {Path(args.out) / f'{backend}-s{seed}' / RESULT}" if r.pop("reused", False) else ""
            results.append(r)
            print(f"{backend} seed {seed}: macro-F1 {r['macro_f1']:.4f}, with AdaBN {r['adabn_macro_f1']:.4f} "
                  f"({r['seconds']} s{where})", flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2))
    lines = [f"Command: `{command_line(__file__)}`", f"Commit: {commit(record)}", "",
             f"real set: {args.real} ({len(real.labels)} images, six classes); chance macro-F1 ≈ 0.167",
             f"AdaBN on {adapt[1]['n_adapt_images']} unlabelled images: "
             + ("the scored real images" if adapt[1]["data"] == "evaluated" else adapt[1]["data"]),
             f"warp strength {args.warp_strength}, input normalisation {args.normalize}",
             f"train: {args.per_class}/class at {args.size} px, {args.epochs} epochs, the {args.preset} preset's "
             f"backbone from scratch, seeds {args.seeds}",
             tier_note(results), "",
             "| backend | macro-F1 | macro-F1 with AdaBN | accuracy | accuracy with AdaBN | tier (with AdaBN: C) | minutes per run |",
             "|---|---|---|---|---|---|---|"]
    for backend in dict.fromkeys(r["backend"] for r in results):
        rs = [r for r in results if r["backend"] == backend]

        def ms(k):
            return mean_std([r[k] for r in rs])
        tier = "/".join(sorted({r["tier"]["name"] for r in rs}))
        minutes = np.mean([r["seconds"] for r in rs]) / 60
        lines.append(f"| {backend} | {ms('macro_f1')} | {ms('adabn_macro_f1')} | {ms('accuracy')} | "
                     f"{ms('adabn_accuracy')} | {tier} | {minutes:.1f} |")
    (Path(args.out) / "results.md").write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))

if __name__ == "__main__":
    raise SystemExit(run_guarded(main))

"""`byel benchmark ablation`: every method on the same synthetic data, backbone, resolution and
budget (same optimiser steps, same fine-tuning), over seeds, scored on real sets without and with
BatchNorm adaptation. Resumable: a run already in results.json under the same resolved config
is not redone."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from byel.classes import NUM_CLASSES
from byel.config import Config, load_config

ABLATION_METHODS = ("supervised", "byol", "byol-cls", "byel")


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def run_ablation(
    out: str | Path,
    eval_sets: list[str],
    preset: str = "cpu-demo",
    seeds: int = 3,
    methods: tuple[str, ...] = ABLATION_METHODS,
    overrides: list[str] | None = None,
    data: str | None = None,
    adapt_bn: str | None = None,
    progress: bool = False,
) -> list[dict]:
    """Run (or resume) the ablation; returns this configuration's records (results.json keeps
    every configuration's) and writes results.json/.md/.png.

    A run is identified by the digest of its resolved config (method and seed set; the progress
    display left out) and, with `data`, of the training data: a finished run is reused only
    under the same identity, and its folder (runs/METHOD-sSEED-ID) only then too — a rerun into
    the same `out` with other --set values trains new runs, and the table shows only them.
    AdaBN adapts on each evaluation set's own scored images, or on `adapt_bn`'s (byel.adapt)."""
    import torch

    from byel.adapt import adaptation_set, adapt_batchnorm
    from byel.data.sources import load
    from byel.data.split import holdout_split, save_split
    from byel.errors import ByelError
    from byel.evaluate import load_classifier, predict_probs
    from byel.metrics import scores
    from byel.synth.generate import generate
    from byel.train import finetune, pretrain

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = load_config(preset, overrides)
    base.trainer.progress = progress
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {r["run_id"]: r for r in results if "run_id" in r}

    generated = data is None
    if generated:  # one synthetic set for every method and seed, named after what makes it
        data = str(out / f"synthetic-{_digest(base.to_dict()['generate'], base.data.image_size)}")
        if not (Path(data) / "manifest.csv").exists():
            g = base.generate
            generate(data, backend=g.backend, per_class=g.per_class, size=base.data.image_size, seed=0,
                     workers=g.workers, sources=g.sources, grey=g.grey, warp_strength=g.warp_strength,
                     progress=progress)
    train = load(data, base.data.image_size, progress=progress)
    data_id = None if generated else train.spec  # a generated set is fixed by the config already
    # One held-out split (by person) for every method and seed, kept out of both stages.
    tr, va, split = holdout_split(train, base.data.val_fraction, base.seed)
    save_split(split, out)
    fit, val = (train.images[tr], train.labels[tr]), (train.images[va], train.labels[va])
    reals = {spec: load(spec, base.data.image_size, progress=progress) for spec in eval_sets}
    adapt = {spec: adaptation_set(adapt_bn, real.images, base.data.image_size, progress) for spec, real in reals.items()}

    current = []
    for seed in range(seeds):
        for method in methods:
            cfg: Config = load_config(preset, overrides)
            cfg.method.name, cfg.seed, cfg.trainer.progress = method, seed, False
            digest = cfg.digest()  # the run's identity: everything but the progress display
            cfg.trainer.progress = progress
            run_id = digest if data_id is None else _digest(digest, data_id)
            record = done.get(run_id)
            if record is None:
                run_dir = out / "runs" / f"{method}-s{seed}-{run_id}"
                t0 = time.time()
                last = pretrain(cfg, *fit, run_dir / "pretrain",
                                resume=(run_dir / "pretrain" / "checkpoints" / "last.ckpt").exists())
                best = finetune(cfg, last, *fit, run_dir / "finetune", val=val)
                record = {"method": method, "seed": seed, "preset": preset, "overrides": list(overrides or []),
                          "config_digest": digest, "run_id": run_id, "train_data": data_id or "generated",
                          "steps": int(torch.load(last, weights_only=True)["global_step"]),
                          "checkpoint": str(best), "train_s": round(time.time() - t0, 1), "eval": {}}
                results.append(record)
                done[run_id] = record
            todo = [s for s in eval_sets
                    if s not in record["eval"] or record["eval"][s]["adabn"].get("data") != adapt[s][1]["data"]]
            if todo:
                if not Path(record["checkpoint"]).exists():
                    raise ByelError(f"{record['checkpoint']} is gone: cannot score run {method}-s{seed}-{run_id} "
                                    f"on {', '.join(todo)}; remove its record from {results_path} to retrain it")
                model = load_classifier(record["checkpoint"])
                for spec in todo:
                    real = reals[spec]
                    images, used = adapt[spec]
                    plain = scores(predict_probs(model, real.images), real.labels)
                    adapted = scores(predict_probs(adapt_batchnorm(model, images), real.images), real.labels)
                    record["eval"][spec] = {**plain, "adabn": {**used, **adapted}, "n_images": int(len(real.labels))}
                tmp = results_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(results, indent=2))
                tmp.replace(results_path)
            current.append(record)
    write_table(current, out, eval_sets)
    return current


def _mean_std(values: list[float]) -> str:
    v = np.array(values)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def write_table(results: list[dict], out: Path, eval_sets: list[str]) -> Path:
    """results.md (mean ± std macro-F1 per method and set, Δ vs supervised) and a bar chart."""
    from byel.plots import ablation_bars

    from byel.metrics import METRIC_DEFINITION

    methods = [m for m in ABLATION_METHODS if any(r["method"] == m for r in results)]
    config = {(r["preset"], " ".join(r.get("overrides", []))) for r in results}
    adapt = {r["eval"][s]["adabn"].get("data", "evaluated") for r in results for s in eval_sets}
    lines = [f"preset {', '.join(f'{p} {o}'.strip() for p, o in sorted(config))}; "
             f"chance macro-F1 = {1 / NUM_CLASSES:.3f}; {len({r['seed'] for r in results})} seed(s); "
             "AdaBN = BatchNorm statistics re-estimated (exact moments, byel.adapt) on "
             + ("each set's own evaluated images without their labels" if adapt == {"evaluated"}
                else "the unlabelled images of " + ", ".join(sorted(adapt))), "", METRIC_DEFINITION, ""]
    summary = {}
    for spec in eval_sets:
        lines += [f"**{spec}**", "", "| method | macro-F1 | Δ vs supervised | macro-F1 with AdaBN | Δ vs supervised | runs |",
                  "|---|---|---|---|---|---|"]
        ref = {k: np.mean([r["eval"][spec][k] if k == "macro_f1" else r["eval"][spec]["adabn"]["macro_f1"]
                           for r in results if r["method"] == "supervised"] or [np.nan]) for k in ("macro_f1", "adabn")}
        for m in methods:
            rs = [r for r in results if r["method"] == m]
            plain = [r["eval"][spec]["macro_f1"] for r in rs]
            ada = [r["eval"][spec]["adabn"]["macro_f1"] for r in rs]
            summary[(spec, m)] = (plain, ada)
            lines.append(f"| {m} | {_mean_std(plain)} | {np.mean(plain) - ref['macro_f1']:+.3f} | {_mean_std(ada)} | "
                         f"{np.mean(ada) - ref['adabn']:+.3f} | {len(rs)} |")
        lines.append("")
    path = out / "results.md"
    path.write_text("\n".join(lines))
    ablation_bars(summary, methods, eval_sets, out / "results.png")
    return path

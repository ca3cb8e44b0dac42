"""`byel benchmark ablation`: every method on the same synthetic data, backbone, resolution and
budget (same optimiser steps, same fine-tuning), over seeds, scored on real sets without and with
BatchNorm adaptation. Resumable: a run already in results.json is not redone."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from byel.classes import NUM_CLASSES
from byel.config import Config, load_config

ABLATION_METHODS = ("supervised", "byol", "byol-cls", "byel")


def _key(r: dict) -> tuple:
    return (r["method"], r["seed"])


def run_ablation(
    out: str | Path,
    eval_sets: list[str],
    preset: str = "cpu-demo",
    seeds: int = 3,
    methods: tuple[str, ...] = ABLATION_METHODS,
    overrides: list[str] | None = None,
    data: str | None = None,
    progress: bool = False,
) -> list[dict]:
    """Run (or resume) the ablation; returns every run's record and writes results.json/.md/.png."""
    import torch

    from byel.data.sources import load
    from byel.evaluate import adapt_batchnorm, load_classifier, predict_probs, scores
    from byel.synth.generate import generate
    from byel.train import finetune, pretrain

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = load_config(preset, overrides)
    base.trainer.progress = progress
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {_key(r) for r in results}

    if data is None:  # one synthetic set for every method and seed
        data = str(out / "synthetic")
        if not (Path(data) / "manifest.csv").exists():
            g = base.generate
            generate(data, backend=g.backend, per_class=g.per_class, size=base.data.image_size, seed=0,
                     workers=g.workers, sources=g.sources, grey=g.grey, warp_strength=g.warp_strength,
                     progress=progress)
    train = load(data, base.data.image_size, progress=progress)
    reals = {spec: load(spec, base.data.image_size, progress=progress) for spec in eval_sets}

    for seed in range(seeds):
        for method in methods:
            if (method, seed) in done:
                continue
            cfg: Config = load_config(preset, overrides)
            cfg.method.name, cfg.seed, cfg.trainer.progress = method, seed, progress
            run_dir = out / "runs" / f"{method}-s{seed}"
            t0 = time.time()
            last = pretrain(cfg, train.images, train.labels, run_dir / "pretrain",
                            resume=(run_dir / "pretrain" / "checkpoints" / "last.ckpt").exists())
            best = finetune(cfg, last, train.images, train.labels, run_dir / "finetune")
            model = load_classifier(best)
            record = {"method": method, "seed": seed, "preset": preset, "config_digest": cfg.digest(),
                      "steps": int(torch.load(last, weights_only=True)["global_step"]),
                      "eval": {}}
            for spec, real in reals.items():
                plain = scores(predict_probs(model, real.images), real.labels)
                adapted = scores(predict_probs(adapt_batchnorm(model, real.images), real.images), real.labels)
                for s in (plain, adapted):
                    s.pop("confusion_matrix")
                record["eval"][spec] = {**plain, "adabn": adapted, "n_images": int(len(real.labels))}
            record["wall_s"] = round(time.time() - t0, 1)
            results.append(record)
            tmp = results_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(results, indent=2))
            tmp.replace(results_path)
    write_table(results, out, eval_sets)
    return results


def _mean_std(values: list[float]) -> str:
    v = np.array(values)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def write_table(results: list[dict], out: Path, eval_sets: list[str]) -> Path:
    """results.md (mean ± std macro-F1 per method and set, Δ vs supervised) and a bar chart."""
    from byel.plots import ablation_bars

    methods = [m for m in ABLATION_METHODS if any(r["method"] == m for r in results)]
    lines = [f"chance macro-F1 = {1 / NUM_CLASSES:.3f}; {len({r['seed'] for r in results})} seed(s); "
             "AdaBN = BatchNorm statistics re-estimated on the unlabelled evaluation images", ""]
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

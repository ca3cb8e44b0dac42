"""The main job (`byel demo`): generate synthetic faces → BYEL pre-training → fine-tuning →
evaluation on real faces → a report listing every artefact."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from byel.config import Config
from byel.synth import FROM_REAL

# What marks a folder as holding a demo run (see byel.checks.check_run_folder).
DEMO_MARKERS = ("report.json", "synthetic/manifest.csv", "pretrain/config.yaml", "finetune/config.yaml",
                "pretrain/checkpoints/*.ckpt", "finetune/checkpoints/*.ckpt")


def _say(msg: str) -> None:
    print(f"[byel demo] {msg}", file=sys.stderr, flush=True)


def run_demo(
    cfg: Config,
    out: Path,
    real: str | None = None,
    backend: str | None = None,
    sources: str | None = None,
    adapt_bn: bool | str | None = False,  # True: on the evaluated images (labels unused); a spec: on its images
    per_class: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    unlabelled: str | None = None,
) -> dict:
    """`resume`: reuse finished stages, continue an interrupted one. Without it a folder that
    holds a demo is refused unless `overwrite`. Every input (real faces, sources) is checked
    before the first step, and the folder is locked for the run. `unlabelled`: a spec of
    unlabelled real images for stage 1's BYOL term (byel.train.pretrain)."""
    from byel.checks import check_run_folder, run_lock
    from byel.data.sources import load
    from byel.errors import DataError

    g = cfg.generate
    backend, sources = backend or g.backend, sources or g.sources
    per_class = g.per_class if per_class is None else per_class
    with run_lock(out):
        check_run_folder(out, resume=resume, overwrite=overwrite, markers=DEMO_MARKERS)
        # Inputs that would otherwise fail only after all the training (decoded here, then cached):
        if real:
            load(real, cfg.data.image_size, progress=cfg.trainer.progress, classes=cfg.data.classes)
        if isinstance(adapt_bn, str):
            load(adapt_bn, cfg.data.image_size, unlabelled=True, progress=cfg.trainer.progress)
        if unlabelled:
            from byel.train import check_unlabelled_method

            check_unlabelled_method(cfg.method.name)
            load(unlabelled, cfg.data.image_size, unlabelled=True, progress=cfg.trainer.progress)
        if backend in FROM_REAL and sources and not Path(sources).is_dir():
            raise DataError(f"--sources {sources}: not a folder of face images")
        return _run_demo(cfg, out, real, backend, sources, adapt_bn, per_class, resume, unlabelled)


def _run_demo(cfg: Config, out: Path, real, backend, sources, adapt_bn, per_class, resume: bool,
              unlabelled: str | None = None) -> dict:
    """The four steps. `resume`: reuse the synthetic faces and continue each stage from its
    checkpoint; a stage without one starts over (the folder was checked by run_demo)."""
    from byel.checks import global_rank
    from byel.data.sources import load
    from byel.data.split import holdout_split, save_split
    from byel.evaluate import evaluate, format_result
    from byel.synth.generate import generate
    from byel.train import finetune, pretrain

    g = cfg.generate
    out.mkdir(parents=True, exist_ok=True)
    times, t0 = {}, time.time()
    progress = cfg.trainer.progress

    synth = out / "synthetic"
    if resume and (synth / "manifest.csv").exists():
        _say(f"1/4 reusing synthetic faces in {synth}")
    else:
        _say(f"1/4 generating {per_class} synthetic faces per class ({backend}, {cfg.data.image_size} px, "
             f"{cfg.data.classes} classes)")
        generate(synth, backend=backend, per_class=per_class, size=cfg.data.image_size, seed=cfg.seed,
                 workers=g.workers, sources=sources, grey=g.grey, warp_strength=g.warp_strength,
                 progress=progress, classes=cfg.data.classes, overwrite=True)  # the demo folder is ours
    times["generate_s"] = time.time() - t0
    data = load(f"imagefolder:{synth}", cfg.data.image_size, progress=progress, classes=cfg.data.classes)
    # Held out before stage 1, by person, and used by neither stage: fine-tuning's model selection.
    # Recorded in the stage-1 run, where `byel finetune --checkpoint` finds it too.
    tr, va, split = holdout_split(data, cfg.data.val_fraction, cfg.seed)
    split_file = save_split(split, out / "pretrain")
    train = (data.images[tr], data.labels[tr])

    t = time.time()
    pre_last = out / "pretrain" / "checkpoints" / "last.ckpt"
    unl = load(unlabelled, cfg.data.image_size, unlabelled=True, progress=progress) if unlabelled else None
    _say(f"2/4 pre-training {cfg.method.name} ({cfg.model.backbone}, {cfg.pretrain.epochs} epochs, {len(tr)} images; "
         f"{len(va)} held out by {split['grouped_by']}"
         + (f"; + {len(unl)} unlabelled real images in the BYOL term" if unl is not None else "") + ")")
    # warp faces are made of real source faces: both checkpoints record them (tier C)
    pretrain(cfg, *train, out / "pretrain", resume=resume and pre_last.exists(), unlabelled=unl,
             generator_sources=data.real_uses)
    times["pretrain_s"] = time.time() - t

    t = time.time()
    ft_last = out / "finetune" / "checkpoints" / "last.ckpt"
    _say(f"3/4 fine-tuning ({cfg.finetune.epochs} epochs; model selection on a held-out synthetic split)")
    best = finetune(cfg, pre_last, *train, out / "finetune", val=(data.images[va], data.labels[va]),
                    resume=resume and ft_last.exists(), generator_sources=data.real_uses)
    times["finetune_s"] = time.time() - t
    if global_rank() != 0:  # under DDP every rank runs this script; one reports
        return {}

    t = time.time()
    result = None
    if real:
        _say(f"4/4 evaluating on real faces: {real}")
        result = evaluate(best, real, out / "eval" / "real.json", adapt_bn=adapt_bn or None, progress=progress)
    else:
        _say("4/4 no --real folder given: skipping the evaluation on real faces")
    times["evaluate_s"] = time.time() - t
    times["total_s"] = time.time() - t0

    summary = {
        "config": str(out / "pretrain" / "config.yaml"),
        "synthetic": str(synth),
        "preview": str(synth / "preview.png"),
        "held_out": {"file": str(split_file),
                     **{k: split[k] for k in ("fraction", "seed", "grouped_by", "n_train", "n_held_out")}},
        "pretrain_checkpoint": str(pre_last),
        "finetune_checkpoint": str(best),
        "evaluation": result,
        "seconds": {k: round(v, 1) for k, v in times.items()},
    }
    (out / "report.json").write_text(json.dumps(summary, indent=2))
    lines = ["", "byel demo — report", "=================="]
    if result:
        lines.append(format_result(result))
        if adapt_bn:
            lines.append("  (AdaBN uses the real images without labels; reported separately from the plain score)")
    lines += [
        f"time: {times['total_s'] / 60:.1f} min (generate {times['generate_s']:.0f} s, pre-train {times['pretrain_s']:.0f} s, "
        f"fine-tune {times['finetune_s']:.0f} s, evaluate {times['evaluate_s']:.0f} s)",
        "artefacts:",
        f"  synthetic faces      {synth}  (preview: {summary['preview']})",
        f"  held-out split       {split_file}  ({split['n_held_out']} images, fraction {split['fraction']}, "
        f"seed {split['seed']}, by {split['grouped_by']}; in neither training stage)",
        f"  pre-train checkpoint {pre_last}",
        f"  fine-tuned model     {best}",
        f"  training logs        {out / 'pretrain' / 'logs'}, {out / 'finetune' / 'logs'}",
    ]
    if result:
        lines += [f"  evaluation report    {result['report']}", f"  confusion matrix     {result['confusion_png']}"]
    lines.append(f"  this summary         {out / 'report.json'}")
    print("\n".join(lines))
    return summary

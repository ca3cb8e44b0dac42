"""The main job (`byel demo`): generate synthetic faces → BYEL pre-training → fine-tuning →
evaluation on real faces → a report listing every artefact.

Its chain is the one every job that trains on generated faces uses: `synthetic_data` (generate from
a config's generate section, or reuse, and load) and `train_chain` (stage 1, then fine-tuning with
model selection on the held-out split) — the demo, `byel benchmark ablation`
(byel.experiments) and benchmarks/generator_transfer.py. The real faces are scored by
byel.evaluate (`evaluate` for a report, `score` for the numbers)."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Callable

from byel.classes import NUM_CLASSES
from byel.config import Config, GenerateConfig
from byel.files import write_text
from byel.choices import FROM_REAL

# The demo's settings (its resolved config and its own options), recorded once its synthetic
# faces exist, for --resume to compare with.
DEMO_RECORD = "demo.json"
# What marks a folder as holding a demo run (see byel.checks.check_run_folder).
DEMO_MARKERS = ("report.json", "synthetic/manifest.csv", "pretrain/config.yaml", "finetune/config.yaml",
                "pretrain/checkpoints/*.ckpt", "finetune/checkpoints/*.ckpt", DEMO_RECORD)


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
    adapt: str | None = None,
) -> dict:
    """`resume`: reuse finished stages, continue an interrupted one — with the demo's own settings
    only: any other (a config key but where it runs and what it shows, byel.train.RESUME_FREE; or
    an option: backend, sources, per_class, real, adapt_bn, unlabelled) is refused in one line
    naming each, before anything is written. Without it a folder that holds a demo is refused
    unless `overwrite`. Every input (real faces, sources) is checked before the first step, and
    the folder is locked for the run. `unlabelled`: a spec of unlabelled real images, used twice
    (tier C): in stage 1's BYOL term (byel.train.pretrain), then by a label-free adaptation of the
    fine-tuned model (`adapt`: a byel.adapt method; default `demo_adaptation`'s choice, "none" to
    skip it), whose checkpoint is evaluated beside the fine-tuned one."""
    from byel.checks import check_run_folder, run_lock
    from byel.data.sources import load
    from byel.errors import DataError

    g = cfg.generate
    backend, sources = backend or g.backend, sources or g.sources
    per_class = g.per_class if per_class is None else per_class
    with run_lock(out):
        check_run_folder(out, resume=resume, overwrite=overwrite, markers=DEMO_MARKERS)
        # Inputs that would otherwise fail only after all the training (decoded here, then cached):
        options = {"--backend": backend, "--per-class": per_class, "--sources": None, "--real": None,
                   "--adapt-bn": bool(adapt_bn), "--unlabelled": None,  # as resolved: specs and paths absolute
                   "--adapt": demo_adaptation(adapt, unlabelled, cfg.finetune.head, cfg.finetune.no_mesh)}
        if real:
            options["--real"] = load(real, cfg.data.image_size, progress=cfg.trainer.progress,
                                     classes=cfg.data.classes).spec
        if isinstance(adapt_bn, str):
            options["--adapt-bn"] = load(adapt_bn, cfg.data.image_size, unlabelled=True,
                                         progress=cfg.trainer.progress).spec
        if unlabelled:
            from byel.train import check_unlabelled_method

            check_unlabelled_method(cfg.method.name)
            options["--unlabelled"] = load(unlabelled, cfg.data.image_size, unlabelled=True,
                                           progress=cfg.trainer.progress).spec
        if backend not in FROM_REAL and sources:  # as generate refuses it, before the first step
            raise DataError(f"--sources {sources}: the {backend} backend uses no source faces; "
                            f"give --backend {' or '.join(FROM_REAL)}, or leave --sources out")
        if backend in FROM_REAL and sources and not Path(sources).is_dir():
            raise DataError(f"--sources {sources}: not a folder of face images")
        if backend in FROM_REAL and sources:
            options["--sources"] = str(Path(sources).resolve())
        settings = {"config": cfg.to_dict(), "options": options}
        if resume:
            check_demo_settings(out, cfg, options)
        return _run_demo(cfg, out, real, backend, sources, adapt_bn, per_class, resume, unlabelled,
                         options["--adapt"], settings)


def demo_adaptation(adapt: str | None, unlabelled: str | None, head: str, no_mesh: str = "pixels") -> str | None:
    """The adaptation the demo runs on its unlabelled images after fine-tuning, or None. By default
    (`adapt` None) with unlabelled images: co-training with three views for a model with the
    activation head (a geometry or fused head with `no_mesh` "activations"), the best fused
    prediction with 26,942 unlabelled FER2013 faces (docs/results.md, "27,000 unlabelled real
    faces"); otherwise self-training, whose fused prediction beat two-view co-training's there on
    average (0.321 ± 0.013 against 0.316 ± 0.001, level within the spread). "none": no
    adaptation. A choice that cannot run is refused in one line before any work."""
    from byel.adapt import method as adapt_method
    from byel.errors import ConfigError

    if adapt == "none":
        return None
    if adapt and not unlabelled:
        raise ConfigError(f"--adapt {adapt} adapts on unlabelled real images: give --unlabelled DIR")
    if not unlabelled:
        return None
    adapt = adapt or ("co-train" if head != "pixels" and no_mesh == "activations" else "self-train")
    adapt_method(adapt)  # an unknown name: one line
    if adapt == "co-train" and head == "pixels":
        raise ConfigError("--adapt co-train needs a face-geometry head: add --head fused (or choose --adapt self-train)")
    return adapt


def recorded_settings(out: Path) -> dict | None:
    """The settings a demo in `out` was run with: its DEMO_RECORD, or for a demo from before it was
    written, what its files say (pretrain/config.yaml; the synthetic set's generate.json: backend
    and images per class). None: nothing recorded (the demo had not generated its faces yet)."""
    from byel.errors import ConfigError
    from byel.data.formats import GENERATE_INFO

    def read(path: Path, parse):
        try:
            return parse(path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read {path} ({e}): the demo's record is damaged; start the demo "
                              "again with --overwrite") from None

    if (out / DEMO_RECORD).is_file():
        return read(out / DEMO_RECORD, json.loads)
    import yaml

    found = {}
    if (out / "pretrain" / "config.yaml").is_file():
        found["config"] = read(out / "pretrain" / "config.yaml", yaml.safe_load)
    if (out / "synthetic" / GENERATE_INFO).is_file():
        info = read(out / "synthetic" / GENERATE_INFO, json.loads)
        found["options"] = {"--backend": info.get("backend"),
                            "--per-class": next(iter((info.get("per_class") or {None: None}).values()))}
    return found or None


def check_demo_settings(out: Path, cfg: Config, options: dict) -> None:
    """Refuse to resume the demo in `out` with settings other than its own: one line naming each
    difference (old → new). Keys that say where it runs and what it shows may change
    (byel.train.RESUME_FREE)."""
    from byel.errors import ConfigError
    from byel.train import config_changes

    recorded = recorded_settings(out)
    if recorded is None:
        return
    changes = config_changes(recorded["config"], cfg) if isinstance(recorded.get("config"), dict) else []
    was = recorded.get("options") if isinstance(recorded.get("options"), dict) else {}
    changes += [f"{k} {was[k]!r} → {v!r}" for k, v in options.items() if k in was and was[k] != v]
    if changes:
        raise ConfigError(f"cannot resume the demo in {out}: it was run with other settings: " + "; ".join(changes)
                          + "; resume with its settings, or start a new demo (another --out, or --overwrite)")


def _run_demo(cfg: Config, out: Path, real, backend, sources, adapt_bn, per_class, resume: bool,
              unlabelled: str | None, adapt: str | None, settings: dict) -> dict:
    """The four steps. `resume`: reuse the synthetic faces and continue each stage from its
    checkpoint; a stage without one starts over (the folder and settings were checked by run_demo;
    the stages' checkpoints are checked here, before anything is written)."""
    from byel.checks import global_rank
    from byel.data.sources import load
    from byel.data.split import SPLIT_FILE, holdout_split
    from byel.evaluate import evaluate, format_result
    from byel.train import data_record, resume_checkpoint

    out.mkdir(parents=True, exist_ok=True)
    times, t0 = {}, time.time()
    progress = cfg.trainer.progress
    n_steps = 5 if adapt else 4
    steps = iter(f"{i}/{n_steps}" for i in range(1, n_steps))

    def say(msg: str) -> None:
        _say(f"{next(steps)} {msg}")

    synth = out / "synthetic"
    gen = dataclasses.replace(cfg.generate, backend=backend, sources=sources, per_class=per_class)
    data, _ = synthetic_data(synth, gen, size=cfg.data.image_size, seed=cfg.seed, classes=cfg.data.classes,
                             progress=progress, reuse=resume, say=say, times=times)  # the demo folder is ours
    # Held out before stage 1, by person, and used by neither stage: fine-tuning's model selection.
    # Recorded in the stage-1 run, where `byel finetune --checkpoint` finds it too.
    tr, va, split = holdout_split(data, cfg.data.val_fraction, cfg.seed)
    split_file = out / "pretrain" / SPLIT_FILE  # written by pretrain, after its checks
    train, val = (data.images[tr], data.labels[tr]), (data.images[va], data.labels[va])
    pre_last = out / "pretrain" / "checkpoints" / "last.ckpt"
    ft_last = out / "finetune" / "checkpoints" / "last.ckpt"
    unl = load(unlabelled, cfg.data.image_size, unlabelled=True, progress=progress) if unlabelled else None
    resume_pre, resume_ft = resume and pre_last.exists(), resume and ft_last.exists()
    # Both stages' checkpoints must be this demo's (settings and data) before either stage writes.
    if resume_pre:
        resume_checkpoint(cfg, out / "pretrain", True, "pretrain", data_record(train),
                          unl.spec if unl is not None else None)
    if resume_ft:
        resume_checkpoint(cfg, out / "finetune", True, "finetune", data_record(train, val))
    if global_rank() == 0:
        _write_json(out / DEMO_RECORD, settings)

    # warp faces are made of real source faces: both checkpoints record them (tier C)
    pre_last, best = train_chain(cfg, train, val, out / "pretrain", out / "finetune", unlabelled=unl,
                                 generator_sources=data.real_uses, split=split, resume=(resume_pre, resume_ft),
                                 say=say, times=times)
    if global_rank() != 0:  # under DDP every rank runs this script; one reports
        return {}

    adaptation = None
    if adapt:
        t = time.time()
        fit = dataclasses.replace(data, images=data.images[tr], labels=data.labels[tr],
                                  paths=[data.paths[i] for i in tr], spec=f"{data.spec} (training split)")
        adaptation = _demo_adaptation(best, unl, fit, adapt, out / "adapt", resume, say, progress)
        times["adapt_s"] = time.time() - t

    t = time.time()
    result = adapted_result = None
    if real:
        _say(f"{n_steps}/{n_steps} evaluating on real faces: {real}")
        result = evaluate(best, real, out / "eval" / "real.json", adapt_bn=adapt_bn or None, progress=progress)
        if adaptation and "checkpoint" in adaptation:
            adapted_result = evaluate(adaptation["checkpoint"], real, out / "eval" / "real-adapted.json", progress=progress)
    else:
        _say(f"{n_steps}/{n_steps} no --real folder given: skipping the evaluation on real faces")
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
    if adaptation:
        summary["adaptation"] = {**{k: adaptation[k] for k in ("method", "data", "n_images", "checkpoint", "report",
                                                               "collapsed") if k in adaptation},
                                 "evaluation": adapted_result}
    _write_json(out / "report.json", summary)
    lines = ["", "byel demo — report", "=================="]
    if result:
        lines.append(format_result(result))
        if adapt_bn:
            lines.append("  (AdaBN uses the real images without labels; reported separately from the plain score)")
    if adaptation:
        lines.append(f"after {adaptation['method']} on {adaptation['n_images']} unlabelled real images "
                     f"({adaptation['data']}):")
        lines.append(format_result(adapted_result) if adapted_result else
                     f"  stopped: {adaptation['collapsed']}" if "collapsed" in adaptation else
                     f"  adapted model: {adaptation['checkpoint']} (no --real folder to score it on)")
    lines += [
        f"time: {times['total_s'] / 60:.1f} min (generate {times['generate_s']:.0f} s, pre-train {times['pretrain_s']:.0f} s, "
        f"fine-tune {times['finetune_s']:.0f} s, "
        + (f"{adapt} {times['adapt_s']:.0f} s, " if adapt else "") + f"evaluate {times['evaluate_s']:.0f} s)",
        "artefacts:",
        f"  synthetic faces      {synth}  (preview: {summary['preview']})",
        f"  held-out split       {split_file}  ({split['n_held_out']} images, fraction {split['fraction']}, "
        f"seed {split['seed']}, by {split['grouped_by']}; in neither training stage)",
        f"  pre-train checkpoint {pre_last}",
        f"  fine-tuned model     {best}",
        *([f"  adapted model        {adaptation['checkpoint']}  ({adaptation['method']}; {adaptation['report']})"]
          if adaptation and "checkpoint" in adaptation else []),
        f"  training logs        {out / 'pretrain' / 'logs'}, {out / 'finetune' / 'logs'}",
    ]
    if result:
        lines += [f"  evaluation report    {result['report']}", f"  confusion matrix     {result['confusion_png']}"]
    if adapted_result:
        lines += [f"  adapted model's      {adapted_result['report']}"]
    lines.append(f"  this summary         {out / 'report.json'}")
    print("\n".join(lines))
    return summary


def _demo_adaptation(best: Path, unlabelled, synthetic, method: str, out: Path, resume: bool,
                     say: Callable[[str], None], progress: bool) -> dict:
    """Adapt the fine-tuned model `best` on the unlabelled ImageSet with `method` (byel.adapt.run,
    its default options; self-train and co-train mix in `synthetic`, the training split) into
    OUT/checkpoints/adapted.ckpt; `resume` reuses an adaptation of this very checkpoint. Returns
    its report; one whose predictions collapsed returns {"method", "collapsed": why}."""
    from byel.adapt.common import CollapseError
    from byel.adapt.run import adapt_checkpoint

    done = out / "adapt.json"
    if resume and done.is_file():
        try:
            report = json.loads(done.read_text())
        except (OSError, ValueError):
            report = {}
        ckpt = Path(report.get("checkpoint", ""))
        if (report.get("method") == method and report.get("source_checkpoint") == str(best) and ckpt.is_file()
                and ckpt.stat().st_mtime >= best.stat().st_mtime):
            say(f"reusing the {method} adaptation in {out}")
            return {**report, "report": str(done)}
    say(f"{method} on {len(unlabelled)} unlabelled real images ({unlabelled.spec}), "
        f"mixed with the {len(synthetic)} synthetic training faces")
    try:
        return adapt_checkpoint(best, unlabelled, method, out, synthetic=synthetic, progress=progress)
    except CollapseError as e:  # the fine-tuned model is still evaluated; the report says why none is adapted
        _say(f"{method} stopped: {e}")
        return {"method": method, "data": unlabelled.spec, "n_images": len(unlabelled), "collapsed": str(e)}


def synthetic_data(out: Path, gen: GenerateConfig, *, size: int, seed: int, classes: int = NUM_CLASSES,
                   progress: bool = False, reuse: bool = False, say: Callable[[str], None] | None = None,
                   times: dict | None = None):
    """Generate the faces `gen` describes (backend, images per class, sources, grey, warp
    strength, workers) at `size` px with `seed` into `out` — an earlier, unfinished set there is
    replaced: the folder is the caller's — and load them (byel.data.sources.load, `classes`).
    `reuse`: a finished set in `out` (its manifest.csv) is loaded as it is, not made again.
    Returns (ImageSet, byel.synth.generate's summary, or None when reused). `say`: a line before
    the work; `times`: gets "generate_s", the seconds the faces took (to make or to find)."""
    from byel.data.sources import load
    from byel.synth.generate import generate

    t0, summary = time.time(), None
    if reuse and (out / "manifest.csv").exists():
        if say:
            say(f"reusing synthetic faces in {out}")
    else:
        if say:
            say(f"generating {gen.per_class} synthetic faces per class ({gen.backend}, {size} px, {classes} classes)")
        summary = generate(out, backend=gen.backend, per_class=gen.per_class, size=size, seed=seed,
                           workers=gen.workers, sources=gen.sources, grey=gen.grey, warp_strength=gen.warp_strength,
                           progress=progress, classes=classes, overwrite=True)
    if times is not None:
        times["generate_s"] = time.time() - t0
    return load(f"imagefolder:{out}", size, progress=progress, classes=classes), summary


def train_chain(cfg: Config, train: tuple, val: tuple, pretrain_dir: Path | None, finetune_dir: Path, *,
                unlabelled=None, generator_sources: list[dict] | None = None, split: dict | None = None,
                resume: tuple[bool, bool] = (False, False), say: Callable[[str], None] | None = None,
                times: dict | None = None) -> tuple[Path | None, Path]:
    """Stage 1 (byel.train.pretrain into `pretrain_dir`) on `train` (images, labels), then
    fine-tuning of its last checkpoint (byel.train.finetune into `finetune_dir`) on the same
    images, choosing the best epoch on `val`, the split held out before stage 1 (`split`: its
    record, written beside stage 1). `pretrain_dir` None: no stage 1, fine-tuning from scratch.
    `unlabelled`: an ImageSet for stage 1's BYOL term; `generator_sources`: the real images
    behind the synthetic ones (both stages record them: tier C). `resume`: whether each stage
    continues from its last.ckpt (checked by the caller). Returns (stage-1 checkpoint or None,
    fine-tuned checkpoint). `say`: a line before each stage; `times`: gets "pretrain_s" and
    "finetune_s"."""
    from byel.train import finetune, pretrain

    last = None
    if pretrain_dir is not None:
        t = time.time()
        if say:
            held = f"; {len(val[1])} held out by {split['grouped_by']}" if split else ""
            say(f"pre-training {cfg.method.name} ({cfg.model.backbone}, {cfg.pretrain.epochs} epochs, "
                f"{len(train[1])} images{held}"
                + (f"; + {len(unlabelled)} unlabelled real images in the BYOL term" if unlabelled is not None else "")
                + ")")
        last = pretrain(cfg, *train, pretrain_dir, resume=resume[0], unlabelled=unlabelled,
                        generator_sources=generator_sources, split=split, val=val)
        if times is not None:
            times["pretrain_s"] = time.time() - t
    t = time.time()
    if say:
        say(f"fine-tuning ({cfg.finetune.epochs} epochs; model selection on a held-out synthetic split)")
    best = finetune(cfg, last, *train, finetune_dir, val=val, resume=resume[1], generator_sources=generator_sources)
    if times is not None:
        times["finetune_s"] = time.time() - t
    return last, best


def _write_json(path: Path, obj) -> None:
    """Write atomically (a temporary file renamed): a demo killed meanwhile keeps the earlier file."""
    write_text(path, json.dumps(obj, indent=2))

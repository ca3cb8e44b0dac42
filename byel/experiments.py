"""`byel benchmark ablation`: every method on the same synthetic data, backbone, resolution and
budget (same optimiser steps, same fine-tuning), over seeds, scored on real sets without and with
BatchNorm adaptation. Resumable: a run already in results.json under the same resolved config
is not redone.

With `unlabelled` every method that has a BYOL term (byel, byol-cls, byol) is also pre-trained
with those unlabelled real images in it (byel.train.pretrain; supervised cannot use them: its one
run is the reference for both); with `adapt` every run is also scored after that adaptation
(byel.adapt) on the AdaBN images. Every score says its tier (A: synthetic pixels only; C: +
unlabelled real images)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from byel.classes import NUM_CLASSES
from byel.config import Config, load_config
from byel.files import write_text

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
    unlabelled: str | None = None,
    adapt: str | None = None,
    adapt_options=None,
    command: str | None = None,
) -> list[dict]:
    """Run (or resume) the ablation; returns this configuration's records (results.json keeps
    every configuration's) and writes results.json/.md/.png.

    A run is identified by the digest of its resolved config (method and seed set; the progress
    display left out) and, with `data`, of the training data: a finished run is reused only
    under the same identity, and its folder (runs/METHOD-sSEED-ID) only then too — a rerun into
    the same `out` with other --set values trains new runs, and the table shows only them.
    AdaBN adapts on each evaluation set's own scored images, or on `adapt_bn`'s (byel.adapt).
    `unlabelled`: a spec of unlabelled real images; methods with a BYOL term are also trained with
    them (a run identity of its own). `adapt`: an adaptation method of byel.adapt (options
    `adapt_options`, a byel.adapt.common.Options), run on the AdaBN images; its identity (method,
    options, images) is kept with each score, so a change recomputes it. `command`: the command
    line behind the table, written at its top and kept, with the machine, versions and git commit
    (byel.provenance.run_record), in each record and score this call makes."""
    import torch

    from byel.adapt import adaptation_set
    from byel.adapt import method as adapt_method
    from byel.adapt.common import CollapseError, Options
    from byel.adapt.run import adapt_model
    from byel.data.sources import load
    from byel.data.split import holdout_split, save_split
    from byel.errors import ByelError
    from byel import classifier
    from byel.evaluate import adabn_use, score
    from byel.metrics import scores
    from byel.pipeline import synthetic_data, train_chain
    from byel.provenance import add_uses, real_uses, run_record, tier_block
    from byel.train import check_classes

    if adapt:
        adapt_method(adapt)  # an unknown name: one line before any training
    if adapt == "co-train" and load_config(preset, overrides).finetune.head == "pixels":
        from byel.errors import ConfigError

        raise ConfigError("co-train needs a geometry or fused head: train the ablation's models with "
                          "--set finetune.head=fused")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = load_config(preset, overrides)
    base.trainer.progress = progress
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {r["run_id"]: r for r in results if "run_id" in r}
    run = run_record(command)  # what trains and scores now: each new record and score keeps it

    generated = data is None
    n_classes = base.data.classes  # 6, or 7 with neutral: generated, trained and scored
    if generated:  # one synthetic set for every method and seed, named after what makes it
        # (the class count only when 7: 6-class sets keep the names they had before it was a choice)
        seven = [n_classes] if n_classes != 6 else []
        data = str(out / f"synthetic-{_digest(base.to_dict()['generate'], base.data.image_size, *seven)}")
        # ours: a finished one is reused, an unfinished one made again
        train, _ = synthetic_data(Path(data), base.generate, size=base.data.image_size, seed=0, classes=n_classes,
                                  progress=progress, reuse=True)
    else:
        train = load(data, base.data.image_size, progress=progress, classes=n_classes)
    data_id = None if generated else train.spec  # a generated set is fixed by the config already
    # One held-out split (by person) for every method and seed, kept out of both stages.
    tr, va, split = holdout_split(train, base.data.val_fraction, base.seed)
    fit, val = (train.images[tr], train.labels[tr]), (train.images[va], train.labels[va])
    reals = {spec: load(spec, base.data.image_size, progress=progress, classes=n_classes) for spec in eval_sets}
    # Every set holds every class the runs ask for (as byel pretrain requires of its data): a 7-class
    # ablation on 6-class data would never learn neutral and score it 0 in each macro-F1.
    check_classes(train.labels, n_classes, f"the training data {train.spec}")
    for spec, real in reals.items():
        check_classes(real.labels, n_classes, f"the evaluation set --eval {spec}")
    save_split(split, out)
    adabn = {spec: adaptation_set(adapt_bn, real.images, base.data.image_size, progress) for spec, real in reals.items()}
    unl = load(unlabelled, base.data.image_size, unlabelled=True, progress=progress) if unlabelled else None
    opts = (adapt_options or Options()).resolved(adapt) if adapt else None
    adapt_ids = {spec: _digest(adapt, opts.record(), used) for spec, (_, used) in adabn.items()} if adapt else {}

    current = []
    for seed in range(seeds):
        for method in methods:
            for with_unl in ([False, True] if unl is not None and method != "supervised" else [False]):
                cfg: Config = load_config(preset, overrides)
                cfg.method.name, cfg.seed, cfg.trainer.progress = method, seed, False
                if not with_unl:  # the ratio means nothing without unlabelled images: one identity at any ratio
                    cfg.pretrain.unlabelled_ratio = 1
                digest = cfg.digest()  # the run's identity: everything but the progress display
                cfg.trainer.progress = progress
                run_id = digest if data_id is None else _digest(digest, data_id)
                if with_unl:  # and the unlabelled images in its BYOL term
                    run_id = _digest(run_id, "unlabelled", unl.spec)
                record = done.get(run_id)
                if record is None:
                    run_dir = out / "runs" / f"{method}{'-unl' if with_unl else ''}-s{seed}-{run_id}"
                    t0 = time.time()
                    last, best = train_chain(
                        cfg, fit, val, run_dir / "pretrain", run_dir / "finetune", unlabelled=unl if with_unl else None,
                        generator_sources=train.real_uses,
                        resume=((run_dir / "pretrain" / "checkpoints" / "last.ckpt").exists(), False))
                    record = {"method": method, "seed": seed, "preset": preset, "overrides": list(overrides or []),
                              "config_digest": digest, "run_id": run_id, "train_data": data_id or "generated",
                              "unlabelled": unl.spec if with_unl else None,
                              "n_unlabelled": int(len(unl)) if with_unl else 0,
                              "steps": int(torch.load(last, weights_only=True)["global_step"]),
                              "checkpoint": str(best), "train_s": round(time.time() - t0, 1), "eval": {},
                              "run": run}
                    results.append(record)
                    done[run_id] = record
                todo = [s for s in eval_sets
                        if s not in record["eval"] or record["eval"][s]["adabn"].get("data") != adabn[s][1]["data"]
                        or "tier" not in record["eval"][s]
                        or (train.real_uses and all(u["stage"] != "generate"
                                                    for u in record["eval"][s]["tier"]["unlabelled_real"]))
                        or (adapt and record["eval"][s].get("adapt", {}).get("id") != adapt_ids[s])]
                if todo:
                    if not Path(record["checkpoint"]).exists():
                        raise ByelError(f"{record['checkpoint']} is gone: cannot score run {method}-s{seed}-{run_id} "
                                        f"on {', '.join(todo)}; remove its record from {results_path} to retrain it")
                    model = classifier.load(record["checkpoint"])
                    # warp training faces' source faces: also for a checkpoint from before they were recorded
                    uses = add_uses(real_uses(model.checkpoint_meta), train.real_uses)
                    for spec in todo:
                        real = reals[spec]
                        images, used = adabn[spec]
                        entry = {**score(model, real.images, real.labels, uses, adabn=adabn[spec]),
                                 "n_images": int(len(real.labels)), "run": run}
                        if adapt:  # on the AdaBN images; self-train mixes in the synthetic training set
                            ada_use = adabn_use(used, "adapt", adapt)
                            entry["adapt"] = {"id": adapt_ids[spec], "method": adapt, "options": opts.record(), **used,
                                              "tier": tier_block(uses + [ada_use], real.images)}
                            try:
                                adapted, rec = adapt_model(model, images, adapt, opts, synthetic=fit, verbose=progress)
                            except CollapseError as e:  # recorded, and the table says how many
                                entry["adapt"]["collapsed"] = str(e)
                            else:
                                entry["adapt"].update({**scores(classifier.predict_probs(adapted, real.images), real.labels),
                                                       "rounds": rec["rounds"]})
                                if "face_geometry" in rec:  # co-train: the CNN learned the landmarker's labels (B+C)
                                    entry["adapt"]["tier"] = tier_block(uses + [{**ada_use, "face_geometry": rec["face_geometry"]}],
                                                                        real.images)
                        record["eval"][spec] = entry
                    write_text(results_path, json.dumps(results, indent=2))
                current.append(record)
    write_table(current, out, eval_sets, adapt, command)
    return current


def _mean_std(values: list[float]) -> str:
    v = np.array(values)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


_TRANSDUCTIVE = {frozenset({True}): "transductive (the scored images are among them)",
                 frozenset({False}): "not transductive (none of the scored images is among them)",
                 frozenset({None}): "transductive or not: unknown"}


def _row_name(r: dict) -> str:
    return r["method"] + (" + unlabelled real" if r.get("unlabelled") else "")


def write_table(results: list[dict], out: Path, eval_sets: list[str], adapt: str | None = None,
                command: str | None = None) -> Path:
    """results.md (mean ± std macro-F1 per method — and pre-training data — and set, Δ vs
    supervised: without adaptation, with AdaBN, after `adapt`) and a bar chart."""
    from byel.plots import ablation_bars

    from byel.metrics import METRIC_DEFINITION

    rows = [name for m in ABLATION_METHODS for name in (m, m + " + unlabelled real")
            if any(_row_name(r) == name for r in results)]
    config = {(r["preset"], " ".join(r.get("overrides", []))) for r in results}
    adabn = {r["eval"][s]["adabn"].get("data", "evaluated") for r in results for s in eval_sets}
    unlabelled = sorted({f"{r['unlabelled']} ({r.get('n_unlabelled', '?')} images)" for r in results if r.get("unlabelled")})
    warped = sorted({f"{u['n_images']} source faces of {u['data']}" for r in results for e in r["eval"].values()
                     for u in (e.get("tier") or {}).get("unlabelled_real", []) if u["stage"] == "generate"})
    # the runs' class count (6, or 7 with neutral), from their per-class scores
    n_classes = max((len(e.get("per_class_f1", ())) for r in results for e in r["eval"].values()),
                    default=NUM_CLASSES) or NUM_CLASSES
    chance = f"{1 / n_classes:.3f}" + ("" if n_classes == NUM_CLASSES else f" ({n_classes} classes)")
    lines = [f"preset {', '.join(f'{p} {o}'.strip() for p, o in sorted(config))}; "
             f"chance macro-F1 = {chance}; {len({r['seed'] for r in results})} seed(s); "
             "AdaBN = BatchNorm statistics re-estimated (exact moments, byel.adapt) on "
             + ("each set's own evaluated images without their labels" if adabn == {"evaluated"}
                else "the unlabelled images of " + ", ".join(sorted(adabn)))
             + (f"; {adapt} (byel.adapt) adapts on the same images" if adapt else ""), "",
             (f"Tier C in every column: the synthetic training faces are warped from {', '.join(warped)} "
              "(unlabelled real faces; + the AdaBN and adaptation images, and those of the rows pre-trained with "
              "unlabelled real images"
              if warped else "Tier A: synthetic pixels only (the plain column of the synthetic-only rows). Tier C: + "
              "unlabelled real images (the AdaBN and adaptation columns, and every row pre-trained with them")
             + (f": {', '.join(unlabelled)}" if unlabelled else "") + "). Δ: against supervised in the same column.",
             "", METRIC_DEFINITION, ""]
    if command:
        lines[:0] = [f"Command: `{command}`", ""]
    columns = [("macro-F1", lambda e: e), ("macro-F1 with AdaBN", lambda e: e["adabn"])]
    if adapt:
        columns.append((f"macro-F1 after {adapt}", lambda e: e.get("adapt", {})))
    head = "| method | " + " | ".join(f"{c} | Δ vs supervised" for c, _ in columns) + " | runs |"
    summary = {}
    for spec in eval_sets:
        lines += [f"**{spec}**", ""]
        for stage, what in (("generate", "Trained on faces warped from unlabelled real faces"),
                            ("pretrain", "Pre-trained with unlabelled real images")):
            seen = {(u["transductive"], u.get("n_evaluated_among")) for r in results
                    for u in (r["eval"][spec].get("tier") or {}).get("unlabelled_real", []) if u["stage"] == stage}
            if seen:  # whether (and how many of) the scored images were among those real images
                n_scored = results[0]["eval"][spec].get("n_images")
                (flag, among), *more = seen
                if not more and flag and among is not None and n_scored and among < n_scored:
                    said = (f"{among} of the {n_scored} scored images are among them (the same pictures in both "
                            "sets); the others are not")
                else:
                    said = _TRANSDUCTIVE.get(frozenset(t for t, _ in seen), "transductive for some runs")
                lines += [f"{what}: {said}.", ""]
        lines += [head, "|---" * (2 * len(columns) + 2) + "|"]

        def values(name, get):
            return [get(r["eval"][spec])["macro_f1"] for r in results
                    if _row_name(r) == name and "macro_f1" in get(r["eval"][spec])]

        ref = [np.mean(values("supervised", get) or [np.nan]) for _, get in columns]
        for name in rows:
            n = sum(_row_name(r) == name for r in results)
            cells = []
            for (_, get), base in zip(columns, ref):
                v = values(name, get)
                failed = f" ({n - len(v)} collapsed)" if len(v) < n else ""
                cells += [(_mean_std(v) if v else "—") + failed, f"{np.mean(v) - base:+.3f}" if v else "—"]
            summary[(spec, name)] = (values(name, columns[0][1]), values(name, columns[1][1]))
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {n} |")
        lines.append("")
    path = out / "results.md"
    path.write_text("\n".join(lines))
    ablation_bars(summary, rows, eval_sets, out / "results.png", chance=1 / n_classes)
    return path

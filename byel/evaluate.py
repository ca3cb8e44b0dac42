"""Evaluation on (real) labelled faces: macro-F1, accuracy, per-class F1 (byel.metrics), a JSON
report and a confusion-matrix PNG — optionally also after real-domain BatchNorm adaptation
(AdaBN, byel.adapt: BN statistics re-estimated on *unlabelled* images; no label is used)."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import torch

from byel import __version__, classifier
from byel.adapt import adaptation_set, adapt_batchnorm
from byel.files import written_whole
from byel.methods.classifier import Classifier
from byel.metrics import METRIC_DEFINITION, scores
from byel.outputs import default_report, evaluation_files
from byel.plots import confusion_matrix_png
from byel.provenance import real_uses, run_record, tier_block


def evaluate(
    checkpoint: str | Path,
    data: str,
    report: str | Path | None = None,
    adapt_bn: str | bool | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Evaluate a fine-tuned checkpoint on a labelled data spec; write the JSON report and PNG.

    adapt_bn: also score after AdaBN — True: adapted on the evaluated images without their
    labels (the scored images only); a data spec: on the unlabelled images it holds.
    The classes are the model's: a 7-class model scores neutral too, a 6-class one skips it."""
    from byel.data.sources import load  # late: keeps `import byel.evaluate` light

    model = classifier.load(checkpoint, device)
    size = model.cfg.data.image_size
    classes = list(model.classes)
    test = load(data, size, progress=progress, classes=len(classes))
    # the names the CLI checked before any work (byel.outputs): RUN/eval/<data>.json by default
    files = evaluation_files(default_report(checkpoint, data) if report is None else report, bool(adapt_bn))
    report = files["report"]
    # a geometry | fused head: the real faces measured too (cached by data spec); None: pixels
    geo = classifier.measure(model, test.images, key=test.spec, progress=progress)
    adabn = adaptation_set(adapt_bn, test.images, size, progress) if adapt_bn else None
    scored = score(model, test.images, test.labels, adabn=adabn, geo=geo, batch_size=batch_size, progress=progress)
    adapted = scored.pop("adabn", None)
    result = {
        "checkpoint": str(checkpoint),
        "data": data,
        "data_resolved": test.spec,
        "n_images": int(len(test.labels)),
        "class_counts": test.counts(),
        "skipped": dict(test.skipped),
        "dropped": dict(test.dropped),
        "classes": classes,
        "metric_definition": METRIC_DEFINITION,
        **scored,
    }
    if test.problems:  # listed beside the report, as training lists them in its run folder
        from byel.data.sources import write_problem_log

        result["problems_log"] = str(files["list of unusable files"])
        with written_whole(files["list of unusable files"]) as tmp:
            write_problem_log(test, str(tmp))
    result["confusion_png"] = str(confusion_matrix_png(
        np.array(result["confusion_matrix"]), classes, files["confusion matrix"],
        f"{Path(str(checkpoint)).name} on {data}\nmacro-F1 {result['macro_f1']:.3f}  acc {result['accuracy']:.3f}"))
    if adapted is not None:
        result["adabn"] = adapted
        result["adabn"]["confusion_png"] = str(confusion_matrix_png(
            np.array(adapted["confusion_matrix"]), classes, files["AdaBN confusion matrix"],
            f"{Path(str(checkpoint)).name} on {data}, BN adapted on {adapted['data']}\nmacro-F1 {adapted['macro_f1']:.3f}"))
    cfg = model.cfg
    result["provenance"] = {
        "byel_version": __version__, "torch_version": torch.__version__, "python": platform.python_version(),
        "seed": cfg.seed, "config_digest": cfg.digest(), "method": cfg.method.name, "backbone": cfg.model.backbone,
        "run": run_record(),  # the command, machine, versions and git commit behind this report
    }
    with written_whole(report) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    result["report"] = str(report)
    return result


def adabn_use(used: dict, stage: str = "evaluate", method: str = "adabn") -> dict:
    """How AdaBN's images enter a score's tier (byel.provenance.tier_block's `uses`): `used` is
    their record from byel.adapt.adaptation_set. `stage`, `method`: for an adaptation that
    starts from AdaBN on the same images (byel.adapt)."""
    return {"stage": stage, "method": method, "data": used["data"], "n_images": used["n_adapt_images"],
            "transductive": used["transductive"], "n_evaluated_among": used["n_evaluated_among"]}


def score(model: Classifier, images: np.ndarray, labels: np.ndarray, uses: list[dict] | None = None, *,
          adabn: tuple[np.ndarray, dict] | None = None, geo=None, batch_size: int = 256,
          progress: bool = False) -> dict:
    """The scores of a fine-tuned `model` (byel.classifier.load) on labelled (real) `images`: macro-F1,
    accuracy, per-class F1 and confusion matrix (byel.metrics.scores) and their `tier` record
    (byel.provenance.tier_block) for the real images the model learned from, `uses` (default:
    those its checkpoint records, byel.provenance.real_uses).

    `adabn`: (images, record) from byel.adapt.adaptation_set: also the scores after AdaBN on those
    images (labels unused), under "adabn": the record, the scores and their tier (+ the AdaBN
    images, adabn_use). `geo`: the images measured for the model's geometry or fused head
    (byel.classifier.measure; None: the pixel CNN alone): the head's scores (tier B), the pixel
    CNN's alone beside them under "pixels_only", and for a fused head the geometry head's alone
    under "geometry_only"; the same under "adabn"."""
    uses = real_uses(model.checkpoint_meta) if uses is None else uses
    result = _scored(classifier.predict_probs(model, images, batch_size, progress), labels, images, uses, geo)
    if adabn is not None:
        adapt_images, used = adabn
        adapted = adapt_batchnorm(model, adapt_images, batch_size, progress)
        result["adabn"] = {**used, **_scored(classifier.predict_probs(adapted, images, batch_size, progress), labels, images,
                                             uses + [adabn_use(used)], geo)}
    return result


def _scored(pixels: np.ndarray, labels: np.ndarray, images: np.ndarray, uses: list[dict], geo) -> dict:
    """score's scores and tier of one set of pixel-CNN probabilities (with a geometry head:
    fused, and each part alone — tiers never mixed)."""
    result = {**scores(pixels if geo is None else geo.fuse(pixels), labels),
              "tier": tier_block(uses, images, None if geo is None else geo.record())}
    if geo is not None:  # tiers never mixed: the pixel CNN's own scores beside the fused ones
        result["pixels_only"] = {**scores(pixels, labels), "tier": tier_block(uses, images)}
        if geo.head == "fused":  # and the geometry head's alone (weight 1; the CNN where no mesh)
            result["geometry_only"] = _geometry_only(geo, pixels, labels, images, uses)
    return result


def _geometry_only(geo, pixels: np.ndarray, labels: np.ndarray, images: np.ndarray, uses: list[dict]) -> dict:
    """A fused model's geometry head alone: fusion weight 1 where a mesh is found, the pixel
    CNN elsewhere (tier B, as the fused scores)."""
    block = tier_block(uses, images, {**geo.record(), "head": "geometry", "fusion_weight": 1.0})
    return {**scores(classifier.fuse(pixels, geo.probs, 1.0), labels), "tier": block}


def format_result(result: dict) -> str:
    """Human-readable summary lines."""
    lines = [f"{result['data']}: {result['n_images']} images"
             + (f" (skipped {', '.join(f'{k} {v}' for k, v in result['skipped'].items())})" if result["skipped"] else "")
             + (f"; {sum(result['dropped'].values())} unusable file(s) not scored, listed in {result['problems_log']}"
                if result.get("problems_log") else "")]
    rows = [("plain", result)] + ([("AdaBN", result["adabn"])] if "adabn" in result else [])
    # a geometry head's scores, each followed by its pixel CNN's alone (another tier)
    rows = [row for name, r in rows for row in [(name, r)] + [(f"{name}, {part.replace('_', ' ')}", r[part])
                                                              for part in ("geometry_only", "pixels_only") if part in r]]
    for name, r in rows:
        per = "  ".join(f"{c[:4]} {f1:.2f}" for c, f1 in r["per_class_f1"].items())
        lines.append(f"  {name:6s} macro-F1 {r['macro_f1']:.4f}  accuracy {r['accuracy']:.4f}  | {per}"
                     + (f"  [tier {r['tier']['name']}]" if "tier" in r else ""))
    if "adabn" in result:
        a = result["adabn"]
        lines.append(f"  AdaBN: BatchNorm statistics of {a['n_adapt_images']} unlabelled images ("
                     + ("the evaluated images" if a["data"] == "evaluated" else a["data"])
                     + (", transductive" if a["transductive"] else "") + ")")
    for u in result.get("tier", {}).get("unlabelled_real", []):
        lines.append((f"  the model learned from {u['n_images']} unlabelled real faces ({u['data']}): its synthetic "
                      f"training faces are warped from them (byel generate --backend {u['method']})"
                      if u["stage"] == "generate" else
                      f"  the model learned from {u['n_images']} unlabelled real images ({u['data']}) in its {u['stage']} stage"
                      + (f" ({u['method']})" if "method" in u else ""))
                     + (", none of them scored here" if u["transductive"] is False else
                        f", transductive: {u['n_evaluated_among']} of the scored images are among them"
                        if u["transductive"] else ""))
    g = result.get("tier", {}).get("face_geometry")
    if g:
        lines.append(f"  {g['head']} head: a face mesh on {g['n_mesh']} of {g['n_images']} faces ({g['detection_rate']:.1%}), "
                     f"fusion weight {g['fusion_weight']:.1f}; faces without one are "
                     f"{g.get('no_mesh', 'classified by the pixel CNN')}")
    n = len(result.get("classes") or range(6))
    lines.append(f"  chance macro-F1 ≈ {1 / n:.3f} ({n} classes)")
    return "\n".join(lines)

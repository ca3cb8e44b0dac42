"""`byel adapt`: a fine-tuned checkpoint + unlabelled images → an adapted fine-tuned checkpoint.

The result is an ordinary fine-tune checkpoint (byel metadata + state_dict, written atomically)
that evaluate, predict, export, submit and byel.load use unchanged. Its metadata's `adaptations`
list gains this adaptation: method, options, data spec, image count, the images' fingerprint
(so an evaluation can tell whether it is transductive), and each round's predicted-class histogram.
The images are read unlabelled: no real label reaches any method."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from byel import __version__
from byel.adapt import OUTPUTS_ONLY, SYNTHETIC
from byel.adapt import method as method_fn
from byel.adapt.common import Monitor, Options, say
from byel.checkpoint import atomic_torch_save, load_checkpoint
from byel.classifier import rebuild
from byel.errors import DataError
from byel.files import write_text
from byel.methods.classifier import Classifier
from byel.provenance import fingerprint, real_uses, tier_block

# Lightning's training state, meaningless for the adapted weights
_TRAINING_STATE = ("optimizer_states", "lr_schedulers", "loops", "callbacks")


def adapt_model(model: Classifier, images: np.ndarray, name: str, opts: Options | None = None,
                synthetic: tuple[np.ndarray, np.ndarray] | None = None, progress: bool = False,
                verbose: bool = True) -> tuple[Classifier, dict]:
    """The adapted copy of `model` (eval mode) and the record of the rounds. `images`: unlabelled
    uint8 (N, H, W, 3); `synthetic`: labelled (images, labels) for self-train and co-train. `model` is untouched.
    `verbose`: each round's histogram on stderr."""
    fn = method_fn(name)
    opts = (opts or Options()).resolved(name)
    if name == "co-train":
        from byel.adapt.co_train import check_views

        check_views(model, opts.views)
    if len(images) < 2:
        raise DataError(f"{len(images)} unlabelled image(s): adaptation needs at least 2")
    work = copy.deepcopy(model)
    monitor = Monitor(name, images, opts, progress, verbose)
    with torch.random.fork_rng(devices=[]):  # a seeded run, whatever the caller drew before
        torch.manual_seed(opts.seed)
        if name not in OUTPUTS_ONLY:
            monitor.round(work)  # round 0: AdaBN
        fn(work, images, opts, monitor, **({"synthetic": synthetic} if name in SYNTHETIC else {}))
    return monitor.adapted.eval(), {"method": name, "options": opts.record(), **monitor.extra, "rounds": monitor.rounds}


def adapt_checkpoint(checkpoint: str | Path, data, name: str, out: str | Path, opts: Options | None = None,
                     synthetic=None, device: str = "cpu", progress: bool = True) -> dict:
    """Adapt a fine-tuned checkpoint on the unlabelled images of `data`; write
    OUT/checkpoints/adapted.ckpt and OUT/adapt.json. Returns the report. `data` and `synthetic`:
    a data spec, or an ImageSet already loaded at the model's size (byel.data.sources.load; the
    demo passes its own, `synthetic` its training split)."""
    from byel.data.sources import load  # late: keeps `import byel.adapt` light

    method_fn(name)  # an unknown method: one line before anything loads
    src = load_checkpoint(checkpoint, kinds=("finetune",))
    model = rebuild(src).to(device)
    size = model.cfg.data.image_size
    opts = opts or Options()
    opts = Options(**{**opts.__dict__, "seed": model.cfg.seed if opts.seed is None else opts.seed}).resolved(name)
    if name == "co-train":  # a pixels-only model, or 3 views without a third: one line before any image is read
        from byel.adapt.co_train import check_views

        check_views(model, opts.views)
    if name in SYNTHETIC and synthetic is None:
        raise DataError(f"{name} mixes the pseudo-labelled images with labelled synthetic ones: give --synthetic SPEC")
    unl = load(data, size, unlabelled=True, progress=progress) if isinstance(data, str) else data
    syn = None
    if name in SYNTHETIC:
        syn = load(synthetic, size, progress=progress, classes=len(model.classes)) if isinstance(synthetic, str) else synthetic
    for what, s in (("unlabelled", unl), ("synthetic", syn)):
        if s is not None and s.images.shape[1:3] != (size, size):
            raise DataError(f"the {what} images are {s.images.shape[2]}x{s.images.shape[1]} px; the model takes {size} px")
    say(f"{name} on {len(unl)} unlabelled images of {unl.spec}"
        + (f", with {len(syn)} labelled synthetic images of {syn.spec}" if syn is not None else ""))
    t0 = time.time()
    adapted, record = adapt_model(model, unl.images, name, opts, (syn.images, syn.labels) if syn is not None else None,
                                  progress)
    record = {**record, "data": data if isinstance(data, str) else unl.spec, "data_resolved": unl.spec, "n_images": int(len(unl)),
              **({"synthetic": syn.spec, "n_synthetic": int(len(syn))} if syn is not None else {}),
              "source_checkpoint": str(checkpoint), "byel_version": __version__, "seconds": round(time.time() - t0, 1)}
    meta = {**src["byel"], "adaptations": [*src["byel"].get("adaptations", []), {**record, "fingerprint": fingerprint(unl.images)}]}
    ckpt = {k: v for k, v in src.items() if k not in _TRAINING_STATE}
    ckpt.update({"byel": meta, "state_dict": {k: v.cpu() for k, v in adapted.state_dict().items()}})
    out = Path(out)
    path = out / "checkpoints" / "adapted.ckpt"
    atomic_torch_save(ckpt, path)
    report = {**record, "checkpoint": str(path),
              "tier": tier_block(real_uses(meta)),
              "transductive": "decided per evaluation: `byel evaluate` checks image by image whether the scored "
                              "images are among these (its report's tier block)"}
    write_text(out / "adapt.json", json.dumps(report, indent=2))
    report["report"] = str(out / "adapt.json")
    return report


def format_report(r: dict) -> str:
    last = r["rounds"][-1]
    prior = "log_prior_ratio" in r
    return "\n".join([
        f"{r['method']} on {r['n_images']} unlabelled images ({r['data']}), "
        + ("a class-prior correction, no weight changed" if prior else f"{len(r['rounds']) - 1} round(s) after AdaBN")
        + f", {r['seconds']:.0f} s",
        *(["  predicted classes before: " + " ".join(f"{c} {n}" for c, n in r["rounds"][0]["histogram"].items()),
           "  log prior ratio: " + " ".join(f"{c} {v:+.2f}" for c, v in zip(last["histogram"], r["log_prior_ratio"]))]
          if prior else []),
        "  predicted classes, last round: " + " ".join(f"{c} {n}" for c, n in last["histogram"].items()),
        *(["  geometry view, last round: " + " ".join(f"{c} {n}" for c, n in last["geometry_histogram"].items())
           + f" on {last['n_mesh']} faces with a mesh; the views agree on {last['agreement']:.0%}"]
          if "geometry_histogram" in last else []),
        f"  tier: {r['tier']['label']}",
        f"adapted checkpoint: {r['checkpoint']}",
        f"report: {r['report']}",
    ])

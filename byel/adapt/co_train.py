"""Co-training (Blum & Mitchell 1998) of a fused (or geometry) head's views on the unlabelled
images: the pixel CNN and the face-geometry head label their confident faces for each other; a
model fine-tuned with finetune.no_mesh=activations brings a third view, the activation head
(byel.faces.activations), which reads every face.

Both views see the faces with a face mesh (the landmarker's, as byel.classifier measures them):
the geometry view can read no other face, and the pixel view's labels only teach the geometry
head, which could not use one either. Round r of R, each view picks, for each class c, the k_r
faces it predicts as c most confidently, k_r = ⌈share · r/R · M/C⌉ (M faces with a mesh, C
classes; fewer if fewer are predicted as c), as self-train does. Then

- the pixel CNN fine-tunes on the geometry view's pseudo-labelled faces mixed half and half with
  the labelled synthetic set (self-train's step, byel.adapt.self_train.fine_tune);
- the geometry head is refitted (fit_geometry_head, as fine-tuning fits it) on the synthetic
  faces' features plus the pixel view's pseudo-labelled faces' features.

The pixel view is the CNN in its deployed form (AdaBN statistics on the images: the monitor's).
The fusion weight stays the one chosen on the synthetic held-out split at fine-tuning. Each round
records the pseudo-labels each view learned (`learned`), the geometry view's predicted classes and
how often the views agree; any view's predictions collapsing onto one class stops the run. No
real label is read: the pseudo-labels are the views' own predictions. The result learned from
the landmarker and the unlabelled images: tier B+C, even for its pixel CNN alone.

With three views (`views=3`, the default for a model with an activation head), each view learns
from the other two (tri-training's rule, Zhou & Li 2005, with their mean probabilities): a face
is a candidate for a view when that view can read it and another can; its teacher probabilities
are the mean of the other views' that read it. So the pixel CNN also learns the activation
view's labels of the faces without a mesh, the activation head is refitted (as fine-tuning fits
it) on the synthetic faces plus its picks, and the geometry head on the pixel and activation
views' mean. With two views this is the rule above, face for face."""

from __future__ import annotations

import math

import numpy as np
import torch

from byel.adapt.common import CollapseError, Monitor, Options, histogram, optimizer, say
from byel.adapt.self_train import fine_tune, pseudo_labels
from byel.classifier import uses_activations
from byel.errors import ConfigError, DataError

NEEDS_HEAD = "co-train needs a geometry or fused head: fine-tune with --head fused"
NEEDS_SYNTHETIC = "co-train mixes the pseudo-labelled images with labelled synthetic ones: give --synthetic SPEC"


def check_views(model, views: int | None) -> int:
    """The number of views co-training uses: 3 where the model has an activation head (unless
    views=2), else 2. A pixels-only model (no second view), or views=3 on a model without an
    activation head, is refused in one line."""
    if getattr(model, "geometry", None) is None:
        raise ConfigError(NEEDS_HEAD)
    if views is None:
        return 3 if uses_activations(model) else 2
    if views == 3 and not uses_activations(model):
        raise ConfigError("co-train --views 3 needs a model with an activation head: fine-tune with "
                          "--set finetune.no_mesh=activations (and --head fused)")
    return views


def _views(monitor: Monitor, probs: dict, mesh: np.ndarray, opts: Options, **extra) -> None:
    """Add the geometry view's predictions (and the activation view's), and the views' agreement
    on the faces with a mesh, to the monitor's last round; stop if a view collapsed."""
    record = monitor.rounds[-1]
    pix, g = monitor.probs[mesh].argmax(1), probs["geometry"][mesh].argmax(1)
    hist = histogram(g, probs["geometry"].shape[1])
    record.update(extra, geometry_histogram=hist, agreement=round(float((pix == g).mean()), 4), n_mesh=int(len(mesh)))
    checks = [("geometry", hist, len(mesh), "faces with a face mesh")]
    if "activations" in probs:
        a = probs["activations"].argmax(1)
        record["activations_histogram"] = histogram(a, probs["activations"].shape[1])
        record["agreement_activations"] = round(float((monitor.probs.argmax(1) == a).mean()), 4)
        checks.append(("activation", record["activations_histogram"], len(a), "faces"))
    if monitor.verbose:
        say(f"co-train {record['what']}: geometry view predicts " + " ".join(f"{c} {n}" for c, n in hist.items())
            + f" on {len(mesh)} faces with a mesh; the views agree on {int((pix == g).sum())} of them")
    for view, h, n, what in checks:
        top = max(h, key=h.get)
        if h[top] > opts.max_class_share * n:
            raise CollapseError(
                f"co-train stopped: the {view} view's predictions collapsed onto one class ({top}: {h[top]} of "
                f"{n} {what} after {record['what']}; limit {opts.max_class_share:g}, "
                "--max-class-share); no checkpoint written — try fewer --rounds or a lower --share")


def _picks(probs: dict, readable: dict, student: str, share_r: float, n_classes: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """What `student` learns this round: (image indices, labels, record). Candidates: the faces
    it reads that another view reads; teacher: the mean of the other views' probabilities there;
    k = ⌈share_r · candidates / classes⌉ most confident faces per class (byel.adapt.self_train)."""
    others = [v for v in probs if v != student]
    reads = np.stack([readable[v] for v in others])  # (V-1, N) bool
    cand = np.flatnonzero(readable[student] & reads.any(0))
    stacked = np.stack([np.where(readable[v][cand, None], probs[v][cand], 0.0) for v in others])
    teacher = stacked.sum(0) / reads[:, cand].sum(0)[:, None]
    k = math.ceil(share_r * len(cand) / n_classes)
    idx, labels = pseudo_labels(teacher, k)
    return cand[idx], labels, {"n": int(len(idx)), "k_per_class": k,
                               "confidence": float(teacher.max(1)[idx].mean()) if len(idx) else 0.0,
                               "histogram": histogram(labels, n_classes)}


def _refit(feats: np.ndarray, syn_feats: np.ndarray, syn_labels: np.ndarray, idx, labels, n_classes: int, what: str,
           syn_found: np.ndarray | None = None):
    from byel.faces import fit_geometry_head

    try:
        return fit_geometry_head(np.concatenate([syn_feats, feats[idx]]), np.concatenate([syn_labels, labels]),
                                 n_classes=n_classes)
    except ValueError as e:  # too few faces with a mesh
        found = "" if syn_found is None else (f" (a mesh was found on {int(syn_found.sum())} of {len(syn_found)} "
                                              "synthetic faces)")
        raise DataError(f"co-train cannot refit the {what} head: {e}{found}") from None


def adapt(model, images: np.ndarray, opts: Options, monitor: Monitor, synthetic=None) -> None:
    from byel.faces.activations import activation_features
    from byel.faces.features import features
    from byel.landmarker import LANDMARKER, SHA256

    if synthetic is None:  # (the views were checked by byel.adapt.run before round 0)
        raise DataError(NEEDS_SYNTHETIC)
    n_views = check_views(model, opts.views)
    syn_images, syn_labels = synthetic
    n, n_classes = len(images), monitor.probs.shape[1]
    feats, found, _ = features(images, key="adapt-unlabelled", progress=monitor.progress)
    syn_feats, syn_found, _ = features(syn_images, key="adapt-synthetic", progress=monitor.progress)
    mesh = np.flatnonzero(found)
    if len(mesh) < 2:
        raise DataError(f"co-train: a face mesh was found on {len(mesh)} of the {len(images)} unlabelled images; "
                        "the geometry view needs at least 2 (faces of 48 px or more help)")
    monitor.extra["face_geometry"] = {
        "model": LANDMARKER, "sha256": SHA256, "head": model.head_kind, "fusion_weight": round(float(model.fusion_weight), 6),
        "fusion_weight_chosen_on": "synthetic held-out split (at fine-tuning; kept)",
        "n_mesh": int(len(mesh)), "n_synthetic": int(len(syn_labels)), "n_synthetic_mesh": int(syn_found.sum())}
    monitor.extra["views"] = ["pixels", "geometry", "activations"][:n_views]
    readable = {"pixels": np.ones(n, bool), "geometry": np.asarray(found, bool)}
    geometry = model.geometry

    def geo_probs() -> np.ndarray:
        out = np.full((n, n_classes), np.nan)
        out[mesh] = geometry.probs(feats[mesh])
        return out

    probs = {"pixels": monitor.probs, "geometry": geo_probs()}
    if n_views == 3:
        acts, _ = activation_features(images, key="adapt-unlabelled", progress=monitor.progress)
        syn_acts, _ = activation_features(syn_images, key="adapt-synthetic", progress=monitor.progress)
        readable["activations"] = np.ones(n, bool)
        probs["activations"] = model.activation_head.probs(acts)
    _views(monitor, probs, mesh, opts)  # round 0: the fine-tuned views
    gen = torch.Generator().manual_seed(opts.seed)
    opt = optimizer([p for p in model.parameters() if p.requires_grad], opts)  # the CNN (the heads are fitted)
    for r in range(1, opts.rounds + 1):
        share_r = opts.share * r / opts.rounds
        # every view's picks from the round's starting predictions, then each view learns its own
        picks = {v: _picks(probs, readable, v, share_r, n_classes) for v in probs}
        loss = fine_tune(model, opt, gen, images, picks["pixels"][0], picks["pixels"][1], synthetic, opts)
        idx, labels, _ = picks["geometry"]
        geometry.load_state_dict(_refit(feats, syn_feats, syn_labels, idx, labels, n_classes, "face-geometry",
                                        syn_found).state_dict())
        if n_views == 3:
            idx, labels, _ = picks["activations"]
            model.activation_head.load_state_dict(
                _refit(acts, syn_acts, syn_labels, idx, labels, n_classes, "activation").state_dict())
        (pi, pl, _), (gi, gl, _) = picks["pixels"], picks["geometry"]
        both, a, b = np.intersect1d(pi, gi, return_indices=True)
        monitor.round(model, f"round {r}/{opts.rounds}", ce_loss=loss, k_per_class=picks["geometry"][2]["k_per_class"])
        probs["pixels"], probs["geometry"] = monitor.probs, geo_probs()
        if n_views == 3:
            probs["activations"] = model.activation_head.probs(acts)
        _views(monitor, probs, mesh, opts, learned={v: rec for v, (_, _, rec) in picks.items()},
               pseudo_agreement={"n_both": int(len(both)), "n_same": int((pl[a] == gl[b]).sum())})

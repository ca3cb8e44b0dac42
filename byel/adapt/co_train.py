"""Co-training (Blum & Mitchell 1998) of a fused (or geometry) head's two views on the unlabelled
images: the pixel CNN and the face-geometry head label their confident faces for each other.

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
records both views' pseudo-label histograms, the geometry view's predicted classes and how often
the views agree; either view's predictions collapsing onto one class stops the run. No real
label is read: the pseudo-labels are the views' own predictions. The result learned from the
landmarker and the unlabelled images: tier B+C, even for its pixel CNN alone."""

from __future__ import annotations

import math

import numpy as np
import torch

from byel.adapt.common import CollapseError, Monitor, Options, histogram, optimizer, say
from byel.adapt.self_train import fine_tune, pseudo_labels
from byel.errors import ConfigError, DataError

NEEDS_HEAD = "co-train needs a geometry or fused head: fine-tune with --head fused"
NEEDS_SYNTHETIC = "co-train mixes the pseudo-labelled images with labelled synthetic ones: give --synthetic SPEC"


def check_head(model) -> None:
    """A pixels-only model has no second view: one line."""
    if getattr(model, "geometry", None) is None:
        raise ConfigError(NEEDS_HEAD)


def _views(monitor: Monitor, geo: np.ndarray, mesh: np.ndarray, opts: Options, **extra) -> None:
    """Add the geometry view's predictions and the views' agreement (on the faces with a mesh) to
    the monitor's last round; stop if the geometry view collapsed."""
    record = monitor.rounds[-1]
    pix, g = monitor.probs[mesh].argmax(1), geo.argmax(1)
    hist = histogram(g, geo.shape[1])
    record.update(extra, geometry_histogram=hist, agreement=round(float((pix == g).mean()), 4), n_mesh=int(len(mesh)))
    if monitor.verbose:
        say(f"co-train {record['what']}: geometry view predicts " + " ".join(f"{c} {n}" for c, n in hist.items())
            + f" on {len(mesh)} faces with a mesh; the views agree on {int((pix == g).sum())} of them")
    top = max(hist, key=hist.get)
    if hist[top] > opts.max_class_share * len(mesh):
        raise CollapseError(
            f"co-train stopped: the geometry view's predictions collapsed onto one class ({top}: {hist[top]} of "
            f"{len(mesh)} faces with a face mesh after {record['what']}; limit {opts.max_class_share:g}, "
            "--max-class-share); no checkpoint written — try fewer --rounds or a lower --share")


def _picked(probs: np.ndarray, k: int, mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """A view's pseudo-labels among the faces with a mesh: (image indices, labels, record)."""
    idx, labels = pseudo_labels(probs, k)
    return mesh[idx], labels, {"n": int(len(idx)), "confidence": float(probs.max(1)[idx].mean()) if len(idx) else 0.0,
                               "histogram": histogram(labels, probs.shape[1])}


def adapt(model, images: np.ndarray, opts: Options, monitor: Monitor, synthetic=None) -> None:
    from byel.faces import fit_geometry_head
    from byel.faces.features import features
    from byel.landmarker import LANDMARKER, SHA256

    if synthetic is None:  # (the head was checked by byel.adapt.run before round 0)
        raise DataError(NEEDS_SYNTHETIC)
    syn_images, syn_labels = synthetic
    n_classes = monitor.probs.shape[1]
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
    geometry = model.geometry
    geo = geometry.probs(feats[mesh])
    _views(monitor, geo, mesh, opts)  # round 0: the fine-tuned views
    gen = torch.Generator().manual_seed(opts.seed)
    opt = optimizer([p for p in model.parameters() if p.requires_grad], opts)  # the CNN (the head is fitted)
    for r in range(1, opts.rounds + 1):
        k = math.ceil(opts.share * r / opts.rounds * len(mesh) / n_classes)
        pix_idx, pix_labels, pix_rec = _picked(monitor.probs[mesh], k, mesh)
        geo_idx, geo_labels, geo_rec = _picked(geo, k, mesh)
        both, a, b = np.intersect1d(pix_idx, geo_idx, return_indices=True)
        # the pixel CNN learns the geometry view's faces; the geometry head the pixel view's
        loss = fine_tune(model, opt, gen, images, geo_idx, geo_labels, synthetic, opts)
        try:
            head = fit_geometry_head(np.concatenate([syn_feats, feats[pix_idx]]),
                                     np.concatenate([syn_labels, pix_labels]), n_classes=n_classes)
        except ValueError as e:  # too few faces with a mesh
            raise DataError(f"co-train cannot refit the face-geometry head: {e} (a mesh was found on "
                            f"{int(syn_found.sum())} of {len(syn_found)} synthetic faces)") from None
        geometry.load_state_dict(head.state_dict())
        geo = geometry.probs(feats[mesh])
        monitor.round(model, f"round {r}/{opts.rounds}", ce_loss=loss, k_per_class=k)
        _views(monitor, geo, mesh, opts, pixel_pseudo=pix_rec, geometry_pseudo=geo_rec,
               pseudo_agreement={"n_both": int(len(both)), "n_same": int((pix_labels[a] == geo_labels[b]).sum())})

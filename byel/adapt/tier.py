"""Which tier a score belongs to, reported beside it, never mixed:

- tier A: synthetic pixels only (the paper's setting);
- tier B: + a pretrained face-geometry model (byel.faces): a geometry head that scores (`geometry`
  below), or a use of the real images that learned from it (co-train's `face_geometry`);
- tier C: + unlabelled real images — which set, how many, and whether the scored images are
  among them (transductive), from the synthetic training data itself (`byel generate --backend
  warp` deforms real neutral faces: its source faces), pre-training (`byel pretrain
  --unlabelled`), an adaptation (`byel adapt`) or AdaBN at evaluation.

A checkpoint carries its own uses of real images in its metadata (`generator_sources`,
`unlabelled`, `adaptations`), each with the images' fingerprint where known, so an evaluation can
say image by image whether it is transductive."""

from __future__ import annotations

import numpy as np

LABELS = {
    "A": "tier A (synthetic pixels only)",
    "B": "tier B (+ pretrained face-geometry model)",
    "C": "tier C (+ unlabelled real images)",
    "B+C": "tier B+C (+ pretrained face-geometry model, + unlabelled real images)",
}


def real_uses(meta: dict) -> list[dict]:
    """The unlabelled real images a checkpoint learned from (its byel metadata): the warp
    generator's source faces behind its training data, pre-training's, then each adaptation's,
    in order."""
    uses = [{**g, "stage": "generate"} for g in meta.get("generator_sources", [])]
    uses += [{"stage": "pretrain", **meta["unlabelled"]}] if meta.get("unlabelled") else []
    return uses + [{"stage": "adapt", **a} for a in meta.get("adaptations", [])]


def add_uses(uses: list[dict], new: list[dict]) -> list[dict]:
    """`uses` and those of `new` not already among them (the same record but for its fingerprint):
    e.g. a fine-tune on the warp faces its stage-1 checkpoint was trained on adds nothing."""
    key = lambda u: {k: v for k, v in u.items() if k != "fingerprint"}  # noqa: E731
    out = list(uses)
    for u in new:
        if all(key(u) != key(o) for o in out):
            out.append(u)
    return out


def tier_block(uses: list[dict], evaluated: np.ndarray | None = None, geometry: dict | None = None) -> dict:
    """{"name", "label", "unlabelled_real": [...], "face_geometry"} for a score made with `uses`
    (real_uses, plus e.g. AdaBN's) on the `evaluated` images. `transductive` (and
    `n_evaluated_among`: how many of the evaluated images are among the use's) is the use's own
    answer if it has one, else decided from its fingerprint, else None (unknown)."""
    from byel.adapt.adabn import overlaps  # late: torch

    listed = []
    for u in uses:
        item = {k: u[k] for k in ("stage", "method", "data", "n_images", "generated", "face_geometry") if k in u}
        if "transductive" in u and u["transductive"] is not None:
            item["transductive"] = bool(u["transductive"])
            item["n_evaluated_among"] = u.get("n_evaluated_among")
        elif u.get("fingerprint") is not None and evaluated is not None:
            item["n_evaluated_among"] = overlaps(u["fingerprint"], evaluated)
            item["transductive"] = item["n_evaluated_among"] > 0
        else:
            item["transductive"] = item["n_evaluated_among"] = None
        listed.append(item)
    landmarker = geometry is not None or any("face_geometry" in u for u in listed)  # co-train's CNN learned from it too
    name = "+".join(t for t, on in (("B", landmarker), ("C", bool(listed))) if on) or "A"
    return {"name": name, "label": LABELS[name], "unlabelled_real": listed, "face_geometry": geometry}

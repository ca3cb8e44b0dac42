"""Pictures of the latent space: where synthetic and real faces land in backbone-feature
space (the domain gap, seen), and how the emotion vectors W of a stage-1 model relate.

- ``plot_latents``: backbone features (global-pooled, before any head) of each data set,
  projected to 2-D by PCA fitted on all sets together (so the sets share one set of axes);
  one panel with every set overlaid (colour = class, marker = set) and one panel per set on
  the same axes; plus a t-SNE panel when scikit-learn is installed.
- ``plot_emotion_vectors``: the 6x6 (7x7 with neutral) cosine similarities between the columns of W (one emotion
  vector per class) of a `byel` / `byol-cls` stage-1 checkpoint. After training the
  orthogonality loss should leave them near-orthogonal: ones on the diagonal, ~0 elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from byel import classifier
from byel.classes import class_names
from byel.errors import ByelError, DataError, escape_surrogates

MARKERS = ["o", "^", "s", "D", "v", "P", "X", "*"]
CLASS_COLOURS = ["#d62728", "#8c564b", "#9467bd", "#2ca02c", "#1f77b4", "#ff7f0e", "#17becf"]  # the six, neutral
UNLABELLED = "#7f7f7f"
MIN_PER_SET = 2  # a set's spread (the centroid-gap unit) and its place in the PCA need two points


@torch.inference_mode()
def features(backbone, preprocess, images: np.ndarray, batch_size: int = 128, device: str = "cpu") -> np.ndarray:
    """Backbone features (N, d) of uint8 images (N, H, W, 3)."""
    out = [backbone(preprocess(torch.from_numpy(images[s:s + batch_size]).to(device))).float().cpu()
           for s in range(0, len(images), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(projection (N, 2), explained-variance ratios (2,), mean) by SVD of the centred data."""
    mean = x.mean(0)
    xc = x - mean
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    var = s ** 2
    ratio = var[:2] / max(var.sum(), 1e-12)
    proj = xc @ vt[:2].T
    if proj.shape[1] < 2:  # degenerate: a 1-D feature space
        proj = np.pad(proj, ((0, 0), (0, 2 - proj.shape[1])))
        ratio = np.pad(ratio, (0, 2 - ratio.size))
    return proj, ratio, mean


def _load_set(spec: str, size: int, max_per_set: int, seed: int, classes: int = 6):
    from byel.data.sources import load

    try:
        data = load(spec, size, progress=False, classes=classes)
    except DataError:
        data = load(spec, size, progress=False, unlabelled=True)  # no class folders: plain images
    idx = np.arange(len(data))
    if len(idx) > max_per_set:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_per_set, replace=False))
    return data.images[idx], data.labels[idx], data.spec


def _short(spec: str) -> str:
    body = spec.split(":", 1)[-1].split("?")[0].rstrip("/\\")
    return escape_surrogates(Path(body).name or body)  # a plot label: a font cannot draw a name that is not UTF-8


def plot_latents(
    checkpoint: str | Path,
    data_specs: list[str],
    out_png: str | Path,
    *,
    max_per_set: int = 600,
    device: str = "cpu",
    seed: int = 0,
) -> dict:
    """Backbone features of each data set (at most ``max_per_set`` images each, random subset),
    2-D PCA fitted on all sets together, plotted overlaid and side by side, coloured by class and
    marked by set; a t-SNE panel when scikit-learn imports. Returns the PNG path, per-set sizes,
    PCA explained variance, and ``centroid_gap``: for each set after the first, the distance of
    its feature centroid from the first set's, in units of the first set's RMS spread."""
    from byel.plots import plt, save_figure

    if not data_specs:
        raise DataError("give at least one data set (e.g. the synthetic training folder and a real one)")
    if max_per_set < MIN_PER_SET:
        raise ByelError(f"max_per_set must be >= {MIN_PER_SET}, got {max_per_set}")
    backbone, pre, cfg = classifier.load_backbone(checkpoint, device)
    classes = class_names(cfg.data.classes)  # the checkpoint's
    sets = []
    for i, spec in enumerate(data_specs):
        images, labels, resolved = _load_set(spec, cfg.data.image_size, max_per_set, seed + i, len(classes))
        sets.append({"name": _short(resolved), "spec": resolved, "labels": labels,
                     "feats": features(backbone, pre, images, device=device)})
    names = [s["name"] for s in sets]
    for i, n in enumerate(names):  # two sets with the same folder name: tell them apart
        if names.count(n) > 1:
            sets[i]["name"] = f"{n} ({i + 1})"
    allf = np.concatenate([s["feats"] for s in sets]).astype(np.float64)
    proj, ratio, _ = pca_2d(allf)
    bounds = np.cumsum([0] + [len(s["feats"]) for s in sets])
    for s, a, b in zip(sets, bounds[:-1], bounds[1:]):
        s["pca"] = proj[a:b]

    tsne = None
    try:
        from sklearn.manifold import TSNE

        if len(allf) >= 10:
            perplexity = float(min(30, max(2, (len(allf) - 1) // 3)))
            tsne = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(allf)
    except ImportError:
        pass

    ref = sets[0]["feats"].astype(np.float64)
    ref_c = ref.mean(0)
    spread = float(np.sqrt(((ref - ref_c) ** 2).sum(1).mean())) or 1.0
    gaps = {s["name"]: float(np.linalg.norm(s["feats"].mean(0) - ref_c) / spread) for s in sets[1:]}

    panels = 1 + (len(sets) if len(sets) > 1 else 0) + (tsne is not None)
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 4.8), squeeze=False)
    axes = axes[0]
    lo, hi = proj.min(0), proj.max(0)
    pad = 0.05 * np.maximum(hi - lo, 1e-6)

    def scatter(ax, pts, s, marker, alpha=0.7):
        lab = s["labels"]
        if (lab < 0).all():
            ax.scatter(pts[:, 0], pts[:, 1], s=14, marker=marker, c=UNLABELLED, alpha=alpha, linewidths=0)
        for ci, c in enumerate(classes):
            sel = lab == ci
            if sel.any():
                ax.scatter(pts[sel, 0], pts[sel, 1], s=14, marker=marker, c=CLASS_COLOURS[ci], alpha=alpha,
                           linewidths=0)

    def frame(ax, title, xl="PC 1", yl="PC 2"):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xl, fontsize=8)
        ax.set_ylabel(yl, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.2)

    ax = axes[0]
    for k, s in enumerate(sets):
        scatter(ax, s["pca"], s, MARKERS[k % len(MARKERS)], alpha=0.55)
    frame(ax, "PCA, all sets" if len(sets) > 1 else f"PCA, {sets[0]['name']}",
          f"PC 1 ({100 * ratio[0]:.0f}% var)", f"PC 2 ({100 * ratio[1]:.0f}% var)")
    ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    if len(sets) > 1:
        for k, s in enumerate(sets):
            ax = axes[1 + k]
            scatter(ax, s["pca"], s, MARKERS[k % len(MARKERS)])
            frame(ax, f"{MARKERS[k % len(MARKERS)]}  {s['name']} (n={len(s['pca'])})")
            ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
            ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    if tsne is not None:
        ax = axes[-1]
        for k, (s, a, b) in enumerate(zip(sets, bounds[:-1], bounds[1:])):
            scatter(ax, tsne[a:b], s, MARKERS[k % len(MARKERS)], alpha=0.55)
        frame(ax, "t-SNE, all sets", "t-SNE 1", "t-SNE 2")

    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", ls="", color=CLASS_COLOURS[i], label=c) for i, c in enumerate(classes)]
    if any((s["labels"] < 0).all() for s in sets):
        handles.append(Line2D([], [], marker="o", ls="", color=UNLABELLED, label="unlabelled"))
    handles += [Line2D([], [], marker=MARKERS[k % len(MARKERS)], ls="", color="black", label=s["name"])
                for k, s in enumerate(sets)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 10), fontsize=8, frameon=False)
    gap_txt = ("; centroid gap to " + sets[0]["name"] + ": "
               + ", ".join(f"{k} {v:.2f}" for k, v in gaps.items())) if gaps else ""
    fig.suptitle(f"backbone features of {escape_surrogates(Path(str(checkpoint)).name)} ({cfg.model.backbone}, "
                 f"{allf.shape[1]}-d){gap_txt}", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    out = save_figure(fig, out_png, dpi=110)
    return {
        "png": str(out),
        "sets": {s["name"]: {"spec": s["spec"], "n": int(len(s["feats"])),
                             "labelled": bool((s["labels"] >= 0).any())} for s in sets},
        "feature_dim": int(allf.shape[1]),
        "pca_explained_variance": [float(r) for r in ratio],
        "tsne": tsne is not None,
        "centroid_gap": gaps,
    }


def emotion_vectors(checkpoint: str | Path) -> np.ndarray:
    """W (proj_dim, C) of a stage-1 byel / byol-cls checkpoint (C = 6, or 7 with neutral);
    ByelError for any other."""
    from byel.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint, kinds=("pretrain", "finetune"))
    W = ckpt["state_dict"].get("classifier.W")
    if W is None:
        meta = ckpt["byel"]
        raise ByelError(f"{checkpoint} has no emotion classifier W (a {meta['kind']} checkpoint of method "
                        f"{meta['method']}); only stage-1 checkpoints of method byel or byol-cls have one")
    return W.detach().float().cpu().numpy()


def cosine_matrix(W: np.ndarray) -> np.ndarray:
    """(C, C) cosine similarities between the columns of W."""
    n = W / np.maximum(np.linalg.norm(W, axis=0, keepdims=True), 1e-12)
    return n.T @ n


def plot_emotion_vectors(checkpoint: str | Path, out_png: str | Path) -> np.ndarray:
    """Heat-map of the cosine similarities between the emotion vectors (columns of W) of a
    stage-1 byel / byol-cls checkpoint; returns the (C, C) matrix."""
    from byel.plots import plt, save_figure

    W = emotion_vectors(checkpoint)
    classes = class_names(W.shape[1])
    cos = cosine_matrix(W.astype(np.float64))
    off = cos[~np.eye(len(cos), dtype=bool)]
    fig, ax = plt.subplots(figsize=(5.6, 4.9))
    im = ax.imshow(cos, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=35, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{cos[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if abs(cos[i, j]) > 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="cosine similarity")
    ax.set_title(f"emotion vectors W of {escape_surrogates(Path(str(checkpoint)).name)} ({W.shape[0]}-d)\n"
                 f"off-diagonal |cos|: mean {np.abs(off).mean():.3f}, max {np.abs(off).max():.3f}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out_png)
    return cos

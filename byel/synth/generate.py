"""`byel generate`: write labelled synthetic expression faces, a manifest and a preview sheet.

Layout: OUT/<class>/<class>_<i:06d>.png, OUT/manifest.csv, OUT/generate.json, OUT/preview.png. The
loader knows the last three as generate's own files (byel.data.formats), so OUT can be trained on
directly. generate.json says how OUT was made; for the warp backend, which real faces it is made of
(tier C, byel.adapt.tier: a model trained on them has learned from unlabelled real images).

Reproducibility: image i of class c is drawn from np.random.default_rng([seed, c, i]) alone,
with c the class's index among all seven (the six emotions 0-5, neutral 6; so a `classes`
subset, or the seven, gives the same images of a class), hence the output is byte-identical
for a seed whatever the number of worker processes.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import re
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from byel.classes import CLASSES, NUM_CLASSES, canonical, class_names
from byel.data.formats import GENERATE_INFO, MANIFEST, PREVIEW
from byel.errors import ByelError, ConfigError
from byel.imageio import write_image
from byel.synth import BACKENDS, FROM_REAL
from byel.synth.au import AUS, AUSampler, as_vector
from byel.synth.preview import contact_sheet
from byel.synth.warp import DEFAULT_STRENGTH

PREVIEW_PER_CLASS = 8
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]  # fixed, so files are deterministic

ALL = class_names(NUM_CLASSES + 1)  # every class generate renders: the six and neutral (index 6)
# Per-process state of a worker (set once by _init_worker; spawn-safe: no closures).
_STATE: dict = {}


def generate(out_dir, *, backend: str = "procedural", per_class: int = 500, size: int = 64,
             seed: int = 0, workers: int = 1, sources=None, grey: bool = False, classes=None,
             warp_strength: float = DEFAULT_STRENGTH, progress: bool = True, gate: bool | None = None) -> dict:
    """Render `per_class` faces for each class and return a summary dict (see module doc).
    `classes`: None or 6, the six emotions; 7, the six and neutral; or a list of class names
    (neutral among them allowed). `gate`: the mesh backend's label-free quality gate (default on
    for mesh; byel.synth.mesh): rejected faces are drawn again, acceptance is recorded per class."""
    names = _check(backend, per_class, size, workers, sources, classes, warp_strength)
    if gate is not None and backend != "mesh":  # a switch that would change nothing
        raise ConfigError(f"the quality gate (--gate/--no-gate) belongs to the mesh backend, not {backend}")
    out = Path(out_dir)
    renderer = _make_backend(backend, size, grey, seed, sources, progress, warp_strength, gate)
    out.mkdir(parents=True, exist_ok=True)
    for c in names:
        (out / c).mkdir(exist_ok=True)

    tasks = [(ALL.index(c), i) for c in names for i in range(per_class)]
    chunk = int(np.clip(len(tasks) // (max(workers, 1) * 8), 16, 256))
    chunks = [tasks[k:k + chunk] for k in range(0, len(tasks), chunk)]
    rows: list[dict] = []
    t0 = time.perf_counter()
    bar = tqdm(total=len(tasks), desc=f"generate ({backend})", unit="img", disable=not progress)
    init = (renderer, str(out), int(seed))
    if workers <= 1:
        _init_worker(*init)
        for ch in chunks:
            rows += _render_chunk(ch)
            bar.update(len(ch))
    else:
        # spawn: no inherited threads/locks (torch, OpenMP) and the same behaviour on every OS.
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(min(workers, len(chunks)), initializer=_init_worker, initargs=init) as pool:
            for part in pool.imap_unordered(_render_chunk, chunks):
                rows += part
                bar.update(len(part))
    bar.close()
    seconds = time.perf_counter() - t0

    rows.sort(key=lambda r: (ALL.index(r["class"]), r["file"]))
    gate = gate_stats(rows, renderer)  # None without a gate
    manifest = _write_manifest(out / MANIFEST, rows, backend, seed)
    info = _write_provenance(out / GENERATE_INFO, rows, renderer, sources, backend=backend, seed=seed, size=size,
                             grey=grey, per_class={c: per_class for c in names}, gate=gate)
    _remove_stale(out, names, per_class)
    preview = contact_sheet(
        {c: [cv2.imread(str(out / c / f"{c}_{i:06d}.png"))[..., ::-1]
             for i in range(min(per_class, PREVIEW_PER_CLASS))] for c in names},
        out / PREVIEW, per_row=PREVIEW_PER_CLASS)
    summary = {
        "n_images": len(rows), "per_class": {c: per_class for c in names}, "backend": backend,
        "size": size, "seed": seed, "grey": grey, "seconds": round(seconds, 3),
        "images_per_s": len(rows) / max(seconds, 1e-9), "out_dir": str(out),
        "manifest": str(manifest), "preview": str(preview), "provenance": str(info),
    }
    if hasattr(renderer, "stats"):
        summary["sources"] = renderer.stats
        summary["warp_strength"] = renderer.strength
    if gate is not None:
        summary["gate"] = gate
    return summary


def _check(backend, per_class, size, workers, sources, classes, warp_strength) -> list[str]:
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if not isinstance(per_class, (int, np.integer)) or per_class <= 0:
        raise ConfigError(f"per-class must be a positive number of images, got {per_class}")
    if not isinstance(size, (int, np.integer)) or size < 16:
        raise ConfigError(f"size must be at least 16 pixels, got {size}")
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if not warp_strength > 0:
        raise ConfigError(f"warp strength must be a positive multiple of the FACS magnitudes, got {warp_strength}")
    if backend in FROM_REAL and not sources:
        raise ConfigError(f"the {backend} backend needs --sources DIR: a folder of (neutral) face images")
    if not classes:
        return list(CLASSES)
    if isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
        return list(class_names(int(classes)))  # 6 or 7; another number: ConfigError
    names = []
    for name in classes:
        c = canonical(str(name), len(ALL))
        if c is None:
            raise ConfigError(f"unknown class {name!r}: choose from {', '.join(ALL)} (or give 6 or 7)")
        if c not in names:
            names.append(c)
    return sorted(names, key=ALL.index)


def _make_backend(backend, size, grey, seed, sources, progress, warp_strength, gate=None):
    if backend == "procedural":
        from byel.synth.procedural import ProceduralBackend

        return ProceduralBackend(size=size, grey=grey)
    if backend == "mesh":
        from byel.synth.mesh import MeshBackend

        return MeshBackend(sources, size=size, grey=grey, seed=seed, progress=progress, strength=warp_strength,
                           gate=True if gate is None else gate)
    try:
        from byel.synth.warp import WarpBackend
    except ImportError as e:
        raise ByelError(f"the warp backend cannot be loaded ({e}); reinstall byel") from e
    return WarpBackend(sources, size=size, grey=grey, seed=seed, progress=progress, strength=warp_strength)


def _init_worker(renderer, out_dir: str, seed: int) -> None:
    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would only contend
    _STATE.update(renderer=renderer, out=Path(out_dir), seed=seed, sampler=AUSampler())


def _render_chunk(tasks: list[tuple[int, int]]) -> list[dict]:
    """Render and write one chunk of (class index, image index); return their manifest rows."""
    renderer, out, seed, sampler = _STATE["renderer"], _STATE["out"], _STATE["seed"], _STATE["sampler"]
    rows = []
    tries = renderer.gate_tries if getattr(renderer, "gate", False) else 1
    for ci, i in tasks:
        name = ALL[ci]
        no_mesh = 0
        for t in range(tries):  # a face the gate rejects is drawn again: new AUs, source and nuisances
            rng = np.random.default_rng([seed, ci, i] if t == 0 else [seed, ci, i, t])
            aus = sampler.sample(name, rng)
            img, params = renderer.render(name, aus, rng)
            no_mesh += params.get("gate_broken") == "no mesh"
            if params.get("gate_pass", 1):
                break
        if tries > 1:
            params.update(gate_tries=t + 1, gate_no_mesh=no_mesh)
        rel = f"{name}/{name}_{i:06d}.png"
        # A grey face is written as a one-channel PNG: a third of the encoding work and of the disk.
        pixels = img[..., 0] if renderer.grey else np.ascontiguousarray(img[..., ::-1])
        write_image(out / rel, pixels, PNG_PARAMS)
        # Images of one group show one person. Warp: the source face. Procedural: the identity is
        # drawn from this image's own rng (seed, class, i), so every image is its own group.
        row = {"file": rel, "class": name, "group": params.get("source", f"{name}_{i:06d}")}
        row.update({f"au{au:02d}": round(float(v), 4) for au, v in zip(AUS, as_vector(aus))})
        row.update(params)
        rows.append(row)
    return rows


def _write_manifest(path: Path, rows: list[dict], backend: str, seed: int) -> Path:
    """CSV with file, class, group (who is shown, see _render_chunk), backend, seed, the AU
    intensities, then the nuisance parameters (the union of the backend's keys, in first-seen
    order). Written to a temporary file and renamed, so a crash never leaves a half-written
    manifest."""
    au_cols = [f"au{au:02d}" for au in AUS]
    extra: dict[str, None] = {}
    for r in rows:
        extra.update(dict.fromkeys(k for k in r if k not in ("file", "class", "group") and k not in au_cols))
    cols = ["file", "class", "group", "backend", "seed", *au_cols, *extra]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, restval="")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "backend": backend, "seed": seed})
    os.replace(tmp, path)
    return path


def gate_stats(rows: list[dict], renderer) -> dict | None:
    """Per class: renders tried, accepted by the quality gate, found without a face mesh, images
    kept although rejected (the last of GATE_TRIES renders), and the acceptance rate (accepted / tried); None
    when the renderer has no gate."""
    if not getattr(renderer, "gate", False):
        return None
    from byel.synth.mesh import GATE_RULES, GATE_TRIES

    per: dict[str, dict] = {}
    for r in rows:
        c = per.setdefault(r["class"], {"images": 0, "tried": 0, "accepted": 0, "no_mesh": 0, "kept_rejected": 0})
        c["images"] += 1
        c["tried"] += int(r.get("gate_tries", 1))
        c["accepted"] += int(r.get("gate_pass", 0))
        c["no_mesh"] += int(r.get("gate_no_mesh", 0))
        c["kept_rejected"] += 1 - int(r.get("gate_pass", 0))
    for c in per.values():
        c["acceptance"] = round(c["accepted"] / max(c["tried"], 1), 3)
    return {"max_tries": GATE_TRIES, "per_class": per,
            "rules": [{"name": r.name, "blendshapes": list(r.score), "low": r.low, "high": r.high,
                       "when": {str(au): x for au, x in r.when}, "absent": list(r.absent), "why": r.why}
                      for r in GATE_RULES]}


def _write_provenance(path: Path, rows: list[dict], renderer, sources, **settings) -> Path:
    """OUT/generate.json: the settings, and for warp the real faces the images are made of: the
    sources folder, its counts, how many faces the images show (`n_faces_shown`, the manifest's
    distinct groups) and each one's hash as the data loader reads it at `size` px
    (byel.adapt.adabn.fingerprint), so an evaluation can tell whether it scores any of them.
    Written to a temporary file and renamed, like the manifest."""
    info = {**settings, "n_images": len(rows)}
    if info.get("gate") is None:
        info.pop("gate", None)
    if settings["backend"] in FROM_REAL:
        shown = sorted({r["group"] for r in rows})
        info["warp_strength"] = renderer.strength
        info["sources"] = {"path": str(Path(sources).resolve()), **renderer.stats, "n_faces_shown": len(shown),
                           "hash_size": settings["size"], "hashes": face_hashes(sources, shown, settings["size"])}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, path)
    return path


def face_hashes(root, names: list[str], size: int) -> dict[str, int]:
    """{source face: its fingerprint hash} for the files `names` under root, read as the data
    loader reads an image at `size` px (so they match an evaluation set holding the same file)."""
    from byel.adapt.adabn import fingerprint  # late: torch
    from byel.data.sources import decode_image
    from byel.imageio import Unusable

    hashes = {}
    for name in names:
        try:
            hashes[name] = int(fingerprint(decode_image(os.path.join(root, name), size)[None])[0])
        except Unusable:  # read by the warp backend, not by the loader: no hash, counted all the same
            pass
    return hashes


def _remove_stale(out: Path, names: list[str], per_class: int) -> None:
    """Delete images of ours left by an earlier, larger run into the same folder."""
    for c in names:
        pat = re.compile(rf"{re.escape(c)}_(\d{{6}})\.png")
        for f in (out / c).iterdir():
            m = pat.fullmatch(f.name)
            if m and int(m.group(1)) >= per_class:
                f.unlink()

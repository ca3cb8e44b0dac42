"""`byel generate`: write labelled synthetic expression faces, a manifest and a preview sheet.

Layout: OUT/<class>/<class>_<i:06d>.png, OUT/manifest.csv, OUT/generate.json, OUT/preview.png. The
loader knows the last three as generate's own files (byel.data.formats), so OUT can be trained on
directly. generate.json says how OUT was made; for the warp backend, which real faces it is made of
(tier C, byel.provenance: a model trained on them has learned from unlabelled real images).

OUT belongs to generate: it must be new, empty, or hold only an earlier generate run. A finished
run of the same settings is kept as it is (nothing written); another run is replaced only with
`overwrite`; a folder holding anything generate did not write (real data, other files) is never
written into. A run marks OUT unfinished (OUT/.generating) from its first write until its manifest,
written last, is in place, so a run stopped midway is refused by the loader instead of trained on.

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
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from byel.classes import CLASSES, NUM_CLASSES, canonical, class_names
from byel.data.formats import GENERATE_INFO, GENERATING, MANIFEST, PREVIEW, generate_run
from byel.errors import ByelError, ConfigError
from byel.imageio import write_image
from byel.provenance import face_hashes
from byel.choices import BACKENDS, FROM_REAL
from byel.synth.au import AUS, AUSampler, as_vector
from byel.synth.preview import contact_sheet
from byel.synth.warp import DEFAULT_STRENGTH

PREVIEW_PER_CLASS = 8
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]  # fixed, so files are deterministic

ALL = class_names(NUM_CLASSES + 1)  # every class generate renders: the six and neutral (index 6)
# Written by file managers, never data: allowed in OUT and left alone.
_JUNK = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
# Above this share of source images without a detected face, generate warns (the warp backend then
# warps the whole crop as if it were a face; mesh skips them).
NO_FACE_WARN = 0.5
# Per-process state of a worker (set once by _init_worker; spawn-safe: no closures).
_STATE: dict = {}


def generate(out_dir, *, backend: str = "procedural", per_class: int = 500, size: int = 64,
             seed: int = 0, workers: int = 1, sources=None, grey: bool = False, classes=None,
             warp_strength: float = DEFAULT_STRENGTH, progress: bool = True, gate: bool | None = None,
             overwrite: bool = False) -> dict:
    """Render `per_class` faces for each class and return a summary dict (see module doc).
    `classes`: None or 6, the six emotions; 7, the six and neutral; or a list of class names
    (neutral among them allowed). `gate`: the mesh backend's label-free quality gate (default on
    for mesh; byel.synth.mesh): rejected faces are drawn again, acceptance is recorded per class.
    `overwrite`: replace an earlier generate run in out_dir (see the module doc); without it a
    finished run of the same settings is returned as it is ("unchanged": True, nothing written)."""
    names = _check(backend, per_class, size, workers, sources, classes, warp_strength)
    if gate is not None and backend != "mesh":  # a switch that would change nothing
        raise ConfigError(f"the quality gate (--gate/--no-gate) belongs to the mesh backend, not {backend}")
    out = Path(out_dir)
    wanted = _settings(backend=backend, seed=seed, size=size, grey=grey, per_class={c: per_class for c in names},
                       sources=sources, warp_strength=warp_strength, gate=gate is not False)
    kept = _check_out(out, wanted, sources, overwrite)
    if kept is not None:
        return kept
    renderer = _make_backend(backend, size, grey, seed, sources, progress, warp_strength, gate)
    _warn_faceless(getattr(renderer, "stats", None), backend, sources)
    _start(out, wanted)
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
    info = _write_provenance(out / GENERATE_INFO, rows, renderer, sources, backend=backend, seed=seed, size=size,
                             grey=grey, per_class={c: per_class for c in names}, gate=gate)
    preview = contact_sheet(
        {c: [cv2.imdecode(np.fromfile(out / c / f"{c}_{i:06d}.png", np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
             for i in range(min(per_class, PREVIEW_PER_CLASS))] for c in names},
        out / PREVIEW, per_row=PREVIEW_PER_CLASS)
    manifest = _write_manifest(out / MANIFEST, rows, backend, seed)  # last: the run is complete
    (out / GENERATING).unlink()
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


def _settings(*, backend, seed, size, grey, per_class, sources=None, warp_strength=None, gate=None) -> dict:
    """What a run's images depend on (not the workers: the bytes are the same for any number),
    comparable between a new run and generate.json's record of an earlier one."""
    s = {"backend": backend, "seed": int(seed), "size": int(size), "grey": bool(grey),
         "per_class": {c: int(n) for c, n in per_class.items()}}
    if backend in FROM_REAL:
        s.update(sources=str(Path(sources).resolve()) if sources else None, warp_strength=float(warp_strength))
    if backend == "mesh":
        s["gate"] = bool(gate)
    return s


def _recorded(out: Path) -> dict | None:
    """The settings an earlier run recorded in OUT/generate.json; None if it cannot be read."""
    try:
        info = json.loads((out / GENERATE_INFO).read_text(encoding="utf-8"))
        return _settings(backend=info["backend"], seed=info["seed"], size=info["size"], grey=info["grey"],
                         per_class=info["per_class"], sources=(info.get("sources") or {}).get("path"),
                         warp_strength=info.get("warp_strength", 0.0), gate="gate" in info)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _check_out(out: Path, wanted: dict, sources, overwrite: bool) -> dict | None:
    """Refuse an output folder generate may not write into (module doc), before any work.
    Returns the summary of a finished run of the `wanted` settings already in it (nothing to do,
    unless `overwrite`), else None: the folder is new, empty or a run of ours to be replaced."""
    if sources and wanted["backend"] in FROM_REAL:
        src, dst = Path(sources).resolve(), out.resolve()
        if src == dst or dst in src.parents or src in dst.parents:
            raise ConfigError(f"--out {out} and --sources {sources} overlap: generate would write among its "
                              "own source faces; choose an --out outside the sources folder")
    if not out.exists():
        return None
    if not out.is_dir():
        raise ConfigError(f"--out {out} is a file; expected a folder")
    foreign = _foreign(out)
    if foreign is not None:  # never, not even with overwrite: it may be the user's data
        raise ConfigError(f"--out {out} holds files or folders byel generate did not write (e.g. {foreign}); it writes "
                          "only into a new or empty folder or over a generate run of its own; choose another --out")
    state = generate_run(out)
    if state is None and not _own_files(out):
        return None  # empty, or empty class folders
    if overwrite:
        return None
    if state == "finished":
        before = _recorded(out)
        if before == wanted:
            return _unchanged(out, wanted)
        diff = _differences(wanted, before) if before else f"its {GENERATE_INFO} is missing or unreadable"
        raise ConfigError(f"--out {out} already holds a generate run with other settings: {diff}; replace it "
                          "with --overwrite (trained runs made from it then no longer match it) or choose another --out")
    raise ConfigError(f"--out {out} holds an unfinished generate run (stopped before it finished); "
                      "replace it with --overwrite or choose another --out")


def _differences(wanted: dict, before: dict) -> str:
    """The settings that differ, as the options that set them: "per-class 1 (there: 2), ..."."""
    parts = []
    for k in dict.fromkeys([*wanted, *before]):
        a, b = wanted.get(k), before.get(k)
        if a == b:
            continue
        if k == "per_class":
            a, b = a or {}, b or {}
            if set(a) != set(b):
                parts.append(f"classes {', '.join(a) or '-'} (there: {', '.join(b) or '-'})")
            if set(a.values()) != set(b.values()):
                parts.append(f"per-class {'/'.join(map(str, sorted(set(a.values()))))} "
                             f"(there: {'/'.join(map(str, sorted(set(b.values()))))})")
        else:
            parts.append(f"{k.replace('_', '-')} {a} (there: {b})")
    return ", ".join(parts)


def _own_names(out: Path):
    """(top-level file names generate writes, {class folder: its image-name pattern})."""
    top = {MANIFEST, GENERATE_INFO, PREVIEW, GENERATING, MANIFEST + ".tmp", GENERATE_INFO + ".tmp", PREVIEW + ".tmp.png"}
    return top, {c: re.compile(rf"{re.escape(c)}_\d{{6}}\.png") for c in ALL}


def _foreign(out: Path) -> str | None:
    """The first path in out that generate did not write (links and folders other than the
    class folders included), or None."""
    top, images = _own_names(out)
    for e in sorted(os.scandir(out), key=lambda e: e.name):
        if e.name.lower() in _JUNK:
            continue
        if e.name in images and e.is_dir(follow_symlinks=False):
            for f in sorted(os.scandir(e.path), key=lambda f: f.name):
                if f.name.lower() not in _JUNK and not (images[e.name].fullmatch(f.name)
                                                        and f.is_file(follow_symlinks=False)):
                    return f.path
        elif not (e.name in top and e.is_file(follow_symlinks=False)):
            return e.path
    return None


def _own_files(out: Path) -> list[Path]:
    """The files of an earlier generate run in out (checked by _foreign to be nothing else)."""
    top, images = _own_names(out)
    files = [out / n for n in top if (out / n).is_file()]
    for c in images:
        if (out / c).is_dir():
            files += [p for p in (out / c).iterdir() if images[c].fullmatch(p.name)]
    return files


def _unchanged(out: Path, wanted: dict) -> dict:
    """The summary of a finished run of the wanted settings, left as it is."""
    return {"n_images": sum(wanted["per_class"].values()), "per_class": wanted["per_class"],
            "backend": wanted["backend"], "size": wanted["size"], "seed": wanted["seed"], "grey": wanted["grey"],
            "seconds": 0.0, "images_per_s": None, "out_dir": str(out), "manifest": str(out / MANIFEST),
            "preview": str(out / PREVIEW), "provenance": str(out / GENERATE_INFO), "unchanged": True}


def _start(out: Path, wanted: dict) -> None:
    """Mark out unfinished, then remove an earlier run's files (checked by _check_out to be
    generate's own), so a run stopped at any point leaves a folder the loader refuses."""
    out.mkdir(parents=True, exist_ok=True)
    (out / GENERATING).write_text(json.dumps({"pid": os.getpid(), **wanted}, indent=1))
    for f in _own_files(out):
        if f.name != GENERATING:
            f.unlink()
    for c in ALL:
        if c not in wanted["per_class"] and (out / c).is_dir():
            try:
                (out / c).rmdir()  # a class this run does not make: its folder goes (when empty)
            except OSError:
                pass


def _warn_faceless(stats: dict | None, backend: str, sources) -> None:
    """One loud stderr line when most readable sources show no face the detector finds (warp
    then warps the whole crop as if it were a face; none at all is refused by the backend)."""
    if not stats:
        return
    readable = stats["n_files"] - stats["n_unreadable"]
    if readable and stats["n_no_face"] / readable > NO_FACE_WARN:
        print(f"byel: warning: {stats['n_no_face']} of {readable} source images under {sources} show no face the "
              f"detector finds ({stats['no_face_policy']}); the {backend} faces made of them may not be faces: "
              "check that --sources holds face crops", file=sys.stderr, flush=True)


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
    if backend not in FROM_REAL and sources:  # a folder that would be ignored
        raise ConfigError(f"the {backend} backend draws every face itself and uses no --sources; drop --sources "
                          f"or choose --backend {' or '.join(FROM_REAL)}")
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
    with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:  # names not UTF-8: their bytes
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
    (byel.provenance.fingerprint), so an evaluation can tell whether it scores any of them.
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

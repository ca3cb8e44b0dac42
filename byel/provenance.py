"""Where a number comes from: which tier a score belongs to, which real images a model learned
from (and whether the scored images are among them), and which machine, versions and commit of
byel made a results file.

Tiers, reported beside a score, never mixed:

- tier A: synthetic pixels only (the paper's setting);
- tier B: + a pretrained face-geometry model (byel.faces): a geometry head that scores (`geometry`
  below), or a use of the real images that learned from it (co-train's `face_geometry`);
- tier C: + unlabelled real images — which set, how many, and whether the scored images are
  among them (transductive), from the synthetic training data itself (`byel generate --backend
  warp` deforms real neutral faces: its source faces), pre-training (`byel pretrain
  --unlabelled`), an adaptation (`byel adapt`) or AdaBN at evaluation.

A checkpoint carries its own uses of real images in its metadata (`generator_sources`,
`unlabelled`, `adaptations`), each with the images' fingerprint where known, so an evaluation can
say image by image whether it is transductive.

A run record (`run_record`) says what made a results file: the command, the machine, the versions
of byel and the libraries it runs on, and the git commit of the byel checkout (with whether it had
uncommitted changes)."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from byel.choices import FROM_REAL
from byel.data.formats import GENERATE_INFO, read_manifest
from byel.imageio import Unusable, fit, read

LABELS = {
    "A": "tier A (synthetic pixels only)",
    "B": "tier B (+ pretrained face-geometry model)",
    "C": "tier C (+ unlabelled real images)",
    "B+C": "tier B+C (+ pretrained face-geometry model, + unlabelled real images)",
}


# --------------------------------------------------------------------------- tiers


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


# --------------------------------------------------------------------------- image fingerprints


def fingerprint(images: np.ndarray):
    """The images' 8-byte hashes, sorted, as an int64 tensor (8 bytes an image): saved with a model
    that learned from them, so an evaluation can tell image by image whether it is transductive."""
    import torch  # late: keeps `import byel.data` free of torch

    h = [int.from_bytes(hashlib.blake2b(np.ascontiguousarray(im).tobytes(), digest_size=8).digest(), "little",
                        signed=True) for im in images]
    return torch.tensor(sorted(h), dtype=torch.int64)


def overlaps(prints, images: np.ndarray) -> int:
    """How many of `images` are among those `prints` (a `fingerprint`) was made from (a few can
    be the same picture by chance: FER2013 repeats some faces, and blank frames, across splits).
    `prints` may also be a list of the hashes (an ImageSet's `real_uses`)."""
    import torch  # late: keeps `import byel.data` free of torch

    return int(torch.isin(fingerprint(images), torch.as_tensor(prints, dtype=torch.int64)).sum())


# --------------------------------------------------------------------------- real faces behind generated ones


def face_hashes(root, names: list[str], size: int) -> dict[str, int]:
    """{source face: its fingerprint hash} for the files `names` under root, read as the data
    loader reads an image at `size` px (so they match an evaluation set holding the same file)."""
    hashes = {}
    for name in names:
        try:
            hashes[name] = int(fingerprint(fit(read(os.path.join(root, name)), size)[None])[0])
        except Unusable:  # read by the warp backend, not by the loader: no hash, counted all the same
            pass
    return hashes


def generator_uses(root: str, paths: list[str], size: int) -> list[dict]:
    """The real images behind the images `paths` of a `byel generate` folder, as a tier record
    (real_uses): the warp backend's source faces — {"stage": "generate", "method": "warp",
    "data": the sources folder, "n_images": distinct source faces shown, "generated": root,
    "fingerprint": their hashes at `size` px or None}. From the manifest (backend and group
    columns) and generate.json; a folder without generate.json (older data) still gets its count,
    with the sources "unknown". [] for procedural faces and folders without a manifest."""
    rows = read_manifest(root)
    if not rows:
        return []
    loaded = {os.path.relpath(p, root).replace(os.sep, "/") for p in paths}
    faces = sorted({r.get("group") or r.get("source") or r["file"] for r in rows
                    if r.get("backend") in FROM_REAL and r.get("file") in loaded})
    if not faces:
        return []
    try:
        with open(os.path.join(root, GENERATE_INFO), encoding="utf-8") as f:
            src = json.load(f).get("sources") or {}
    except (OSError, ValueError, AttributeError):
        src = {}
    hashes = src.get("hashes") or {}
    if src.get("hash_size") != size or any(f not in hashes for f in faces):
        hashes = _rehash(src.get("path"), faces, size)
    method = "+".join(sorted({r["backend"] for r in rows if r.get("backend") in FROM_REAL}))
    return [{"stage": "generate", "method": method, "data": src.get("path") or f"unknown ({method} sources)",
             "n_images": len(faces), "generated": root,
             "fingerprint": None if hashes is None else sorted(hashes[f] for f in faces)}]


def _rehash(sources: str | None, faces: list[str], size: int) -> dict[str, int] | None:
    """The source faces' hashes at another size than generate's, read again from the sources
    folder; None (transductive unknown) when any of them is gone."""
    if not sources or not all(os.path.isfile(os.path.join(sources, f)) for f in faces):
        return None
    hashes = face_hashes(sources, faces, size)
    return hashes if len(hashes) == len(faces) else None


# --------------------------------------------------------------------------- the run record

# The libraries a result depends on: the name reported → the module that says its version.
LIBRARIES = {"torch": "torch", "lightning": "lightning", "numpy": "numpy", "opencv": "cv2", "kornia": "kornia",
             "torchmetrics": "torchmetrics"}
_GIT_TIMEOUT_S = 10


def run_record(command: str | None = None) -> dict:
    """What made a result: {"command", "commit", "dirty", "machine", "versions"}.

    `command`: the command line behind it (default: this process's own, `shlex.join(sys.argv)`).
    `commit`: the git commit (40 hex digits) of the byel checkout this code runs from, `dirty`:
    whether `git status --porcelain` lists changes there; both None where byel is not run from a
    git checkout (an installed package) or git is missing. `machine`: CPU model, core count, OS
    (and the GPU where torch is loaded and sees one). `versions`: Python, byel and the libraries
    (None for one that is not installed). Never raises."""
    if command is None:
        command = shlex.join(sys.argv) if sys.argv and sys.argv[0] else None
    return {"command": command, **git_commit(), "machine": machine(), "versions": versions()}


def machine() -> dict:
    """{"cpu": model name, "cores": logical CPUs, "os": platform, "gpu": name or None}."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    torch = sys.modules.get("torch")  # only when already loaded: asking CUDA costs nothing then
    try:
        if torch is not None and torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001  (a broken driver must not fail a results file)
        gpu = None
    return {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform(), "gpu": gpu}


def versions() -> dict:
    """{"python", "byel", and each of LIBRARIES: its version, None where it does not import}."""
    # byel's own package, loaded before any of its modules (read, not imported: an import of `byel`
    # would tie this floor to the package's lazy facade, byel.api)
    out = {"python": platform.python_version(), "byel": sys.modules[__package__].__version__}
    for name, module in LIBRARIES.items():
        try:
            out[name] = str(importlib.import_module(module).__version__)
        except Exception:  # noqa: BLE001  (not installed, or broken: no version to report)
            out[name] = None
    return out


def git_commit() -> dict:
    """{"commit": HEAD of the git checkout byel runs from, "dirty": uncommitted changes there};
    both None where byel's folder is not the top of a git checkout (e.g. installed into
    site-packages, even inside another repository) or git cannot be run."""
    root = Path(__file__).resolve().parent.parent
    none = {"commit": None, "dirty": None}
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # `git status` must not take the index lock
    try:
        top, head = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=root, env=env,
                                   capture_output=True, text=True, timeout=_GIT_TIMEOUT_S,
                                   check=True).stdout.splitlines()
        if Path(top).resolve() != root or len(head) != 40:
            return none
        status = subprocess.run(["git", "status", "--porcelain"], cwd=root, env=env, capture_output=True,
                                text=True, timeout=_GIT_TIMEOUT_S, check=True).stdout
    except (OSError, ValueError, subprocess.SubprocessError):
        return none
    return {"commit": head, "dirty": bool(status.strip())}

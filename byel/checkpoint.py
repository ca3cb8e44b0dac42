"""Checkpoints: written atomically, loaded with `weights_only=True`, and self-describing.

Every byel checkpoint carries a `byel` metadata block (format, byel version, stage, method,
backbone, classes, input size and normalisation, the full config) so `finetune`, `evaluate`
and `predict` need nothing else, and a checkpoint from another model is refused with one line
that names what does not match.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from byel import __version__
from byel.classes import CLASS_COUNTS, class_names
from byel.errors import CheckpointError, os_reason
from byel.landmarker import SHA256 as LANDMARKER_SHA256

FORMAT = 1


def metadata(kind: str, cfg) -> dict[str, Any]:
    head = cfg.finetune.head if kind == "finetune" else "pixels"
    geometry = {} if head == "pixels" else {  # the face-geometry model the head reads (tier B)
        "head": head, "face_geometry": {"model": "MediaPipe Face Landmarker v2", "sha256": LANDMARKER_SHA256}}
    return {
        "format": FORMAT,
        "byel_version": __version__,
        "kind": kind,  # "pretrain" | "finetune"
        "method": cfg.method.name,
        "backbone": cfg.model.backbone,
        "classes": list(class_names(cfg.data.classes)),
        "image_size": cfg.data.image_size,
        "normalize": cfg.aug.normalize,
        "mean": list(cfg.aug.mean),
        "std": list(cfg.aug.std),
        "config": cfg.to_dict(),
        **geometry,
    }


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_failed(path: Path, e: OSError, had_previous: bool) -> CheckpointError:
    kept = "the previous checkpoint is kept" if had_previous else "no checkpoint was written"
    return CheckpointError(f"cannot write checkpoint to {path}: {os_reason(e)}; {kept}")


class KeepWriteError:
    """A binary file whose write errors are kept: torch's zip writer turns an OSError raised by
    write() (a full disk) into an opaque RuntimeError, or, saving a TorchScript module, aborts the
    process. `error` is the OSError, to raise instead."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        self.f.flush()


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`:
    a crash mid-write leaves the previous checkpoint intact, never a truncated one. A write
    that fails (a full disk) removes its temporary file and raises one CheckpointError line
    saying so. The file gets the usual permissions (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    had_previous = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _write_failed(path, e, had_previous) from None
    try:
        if hasattr(os, "fchmod"):  # not on Windows
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            kept = KeepWriteError(f)
            try:
                torch.save(obj, kept)
            except RuntimeError:
                if kept.error is None:
                    raise
                raise kept.error from None
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _write_failed(path, e, had_previous) from None
        raise


def remove_stale_temporaries(folder: str | Path) -> None:
    """Delete the temporary files of checkpoint writes that were killed (`.last.ckpt.*.tmp`).
    Called at the start of a run, under the run folder's lock, so no write is in progress."""
    for tmp in Path(folder).glob(".*.ckpt.*.tmp"):
        tmp.unlink(missing_ok=True)


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """torch.load(weights_only=True) with one-line errors for missing, truncated or foreign files."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(_folder_message(path))
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    # torch warns about what it reads (a pickle protocol, a TorchScript archive): said in our
    # own line when the file cannot be read, never printed around it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 — the unpickler fails on foreign bytes in many ways
            # (UnpicklingError, BadZipFile, EOFError, and KeyError/IndexError/TypeError on text or
            # random bytes): all mean the file is not a checkpoint we can read.
            raise CheckpointError(_unreadable(path, e, [str(w.message) for w in caught])) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not a byel checkpoint (it holds a {type(ckpt).__name__})")
    return ckpt


def _folder_message(folder: Path) -> str:
    """A folder given as a checkpoint: say so, and name a checkpoint file in it if there is one."""
    preference = {"best.ckpt": 0, "adapted.ckpt": 1, "last.ckpt": 2}
    found = sorted((*folder.glob("*.ckpt"), *folder.glob("checkpoints/*.ckpt")),
                   key=lambda p: (preference.get(p.name, 3), len(p.parts), p.name))
    example = f", e.g. {found[0]}" if found else " (a run folder holds them in checkpoints/)"
    return f"{folder} is a folder, not a checkpoint: pass a checkpoint file (.ckpt){example}"


def _unreadable(path: Path, e: Exception, warned: list[str]) -> str:
    """One line for a file torch.load(weights_only=True) refused. torch's own text is long and
    suggests weights_only=False (which would run whatever code the file holds): never shown."""
    text = str(e)
    if "TorchScript" in text or any("TorchScript" in w for w in warned):
        return (f"{path} is a TorchScript model (e.g. from byel export), not a byel checkpoint: "
                "pass the .ckpt it was made from")
    if isinstance(e, pickle.UnpicklingError) or "weights_only" in text:
        name = re.search(r"GLOBAL ([\w.]+)", text)
        if name:
            return (f"{path} is not a byel checkpoint: it contains code or objects byel does not load "
                    f"({name.group(1)}); byel loads checkpoints with weights_only=True")
        protocol = next((m.group(1) for w in warned for m in [re.search(r"pickle protocol (\d+)", w)] if m), None)
        if protocol:
            return (f"cannot read checkpoint {path}: it was saved with pickle protocol {protocol}, which byel's "
                    "safe loading (weights_only=True) does not read; byel's checkpoints use torch.save's default (2)")
        return (f"cannot read checkpoint {path}: truncated or not a byel checkpoint (unreadable by byel's "
                "safe loading, weights_only=True)")
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return f"cannot read checkpoint {path}: truncated or not a byel checkpoint ({first[:120]})"


def load_checkpoint(path: str | Path, kinds: tuple[str, ...] = ("pretrain", "finetune")) -> dict:
    """Read a byel checkpoint and check that it is of an expected stage and format."""
    ckpt = read_checkpoint(path)
    meta = ckpt.get("byel")
    if not isinstance(meta, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a byel checkpoint (no byel metadata)")
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} has checkpoint format {meta.get('format')} (byel {meta.get('byel_version')}); "
            f"this byel {__version__} reads format {FORMAT}"
        )
    config = meta.get("config")
    lacking = ([] if "kind" in meta else ["kind"]) + (
        [f"config.{s}" for s in ("model", "data", "aug") if not isinstance(config.get(s), dict)]
        if isinstance(config, dict) else ["config"])
    if lacking:  # what finetune, evaluate and predict read
        raise CheckpointError(f"{path} is not a byel checkpoint: its byel metadata has no {', '.join(lacking)}")
    classes = meta.get("classes")
    if classes not in [list(class_names(n)) for n in CLASS_COUNTS]:
        raise CheckpointError(f"{path} was trained for classes {classes}, not {list(class_names(6))} "
                              f"(or those and neutral)")
    # the network's outputs follow the class list (configs from before data.classes lack it)
    config["data"]["classes"] = len(classes)
    if meta["kind"] not in kinds:
        hint = " — fine-tune it first with `byel finetune`" if meta["kind"] == "pretrain" else ""
        raise CheckpointError(f"{path} is a {meta['kind']} checkpoint; expected {' or '.join(kinds)}{hint}")
    return ckpt


def backbone_state(ckpt: dict) -> dict[str, torch.Tensor]:
    """The online backbone's weights (keys without the `backbone.` prefix)."""
    prefix = "backbone."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    if not state:
        raise CheckpointError("checkpoint holds no backbone weights")
    return state

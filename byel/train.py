"""The two training stages as plain functions: `pretrain` and `finetune`.

Both build the same Lightning Trainer (devices, DDP, precision, atomic checkpoints,
`last.ckpt` for resume, CSV/TensorBoard loggers, a progress bar) and save the resolved config
next to the run; pre-training also saves its schedules (schedules.npz, schedules.png).
"""

from __future__ import annotations

import hashlib
import logging
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.plugins.io import TorchCheckpointIO

from byel.checkpoint import atomic_torch_save, backbone_state, load_checkpoint, read_checkpoint, remove_stale_temporaries
from byel.checks import check_run_folder, global_rank, run_in, run_lock
from byel.classes import NUM_CLASSES, class_names
from byel.config import Config, check_no_mesh
from byel.data.datamodule import ArrayDataModule
from byel.data.split import save_split, stratified_split
from byel.errors import ByelError, CheckpointError, ConfigError, DataError, Interrupted
from byel.methods import FineTune, create_method
from byel.methods.base import LEARNED_FROM
from byel.files import written_whole
from byel.provenance import add_uses, fingerprint

log = logging.getLogger("byel")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O with atomic writes and safe (weights-only) loading (byel.checkpoint;
    here, not there, so that reading a checkpoint imports no Lightning)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return read_checkpoint(path, map_location=map_location or "cpu")


def quiet_lightning() -> None:
    """Keep the console to what a user needs: Lightning's tips and our own warnings off."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    warnings.filterwarnings("ignore", ".*Checkpoint directory.*exists and is not empty.*")
    warnings.filterwarnings("ignore", ".*The number of training batches.*")
    # pre-training's data module has a (possibly empty) val_dataloader, but its held-out score is
    # the method's own (PretrainMethod.heldout_f1), not Lightning's validation loop
    warnings.filterwarnings("ignore", ".*no `validation_step`.*")


def _devices(value: str):
    v = str(value).strip()
    if v == "auto":
        return "auto"
    if "," in v:
        return [int(d) for d in v.split(",") if d.strip()]
    try:
        return int(v)
    except ValueError:
        raise ByelError(f"invalid trainer.devices {value!r}: use auto, a count, or a list like 0,1") from None


def resolve_precision(value: str) -> str:
    """The trainer precision for a config value: "auto" is bf16-mixed where the GPU supports
    bf16, else 32-true; any other value as given."""
    if value != "auto":
        return value
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def build_trainer(cfg: Config, out_dir: Path, max_epochs: int, monitor: str | None = None,
                  checkpoints: bool = True, **extra) -> L.Trainer:
    t = cfg.trainer
    ckpt_dir = out_dir / "checkpoints"
    callbacks = []
    if checkpoints:  # last.ckpt after every epoch (what --resume continues from), replaced atomically
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename="last", every_n_epochs=1, enable_version_counter=False))
    if checkpoints and monitor:  # and the best epoch by the monitored metric
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=monitor, mode="max",
                                         enable_version_counter=False))
    if t.progress:
        callbacks.append(TQDMProgressBar(refresh_rate=max(1, t.log_every_n_steps // 4)))
    loggers = []
    if t.logger in ("csv", "both"):
        loggers.append(CSVLogger(out_dir, name="logs"))  # logs/version_N: a resumed run never overwrites
    if t.logger in ("tensorboard", "both"):
        loggers.append(TensorBoardLogger(out_dir, name="tensorboard"))
    callbacks += extra.pop("callbacks", [])
    try:
        return _trainer(cfg, out_dir, max_epochs, callbacks, loggers, checkpoints, **extra)
    except (MisconfigurationException, ValueError, TypeError, ImportError) as e:
        # Lightning refuses a setting it cannot use here (a GPU on a CPU machine, an unknown
        # strategy or precision, a missing package): one line, not its traceback.
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ConfigError(f"invalid trainer settings (accelerator {t.accelerator}, devices {t.devices}, "
                          f"strategy {t.strategy}, precision {t.precision}, num_nodes {t.num_nodes}): {first}") from None


def _trainer(cfg: Config, out_dir: Path, max_epochs: int, callbacks: list, loggers: list, checkpoints: bool,
             **extra) -> L.Trainer:
    t = cfg.trainer
    return L.Trainer(
        accelerator=t.accelerator,
        devices=_devices(t.devices),
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        sync_batchnorm=t.sync_batchnorm and t.accelerator != "cpu" and torch.cuda.is_available(),
        precision=resolve_precision(t.precision),
        max_epochs=max_epochs,
        callbacks=callbacks,
        logger=loggers or False,
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.progress,
        enable_model_summary=False,
        deterministic=t.deterministic,
        gradient_clip_val=cfg.optim.grad_clip or None,
        plugins=[AtomicCheckpointIO()],
        enable_checkpointing=checkpoints,
        default_root_dir=out_dir,
        **extra,
    )


# Config keys a resumed run may change: where it runs and what it shows, not what it computes
# (a killed job may continue on another machine, on other devices, without a progress bar; the
# numbers then follow the new placement). Every other key of the resolved config must be the
# run's, and so must its data (see resume_checkpoint); a stage run on its own may also extend its
# own epochs (pretrain.epochs, finetune.epochs).
RESUME_FREE = ("preset", "trainer.accelerator", "trainer.devices", "trainer.num_nodes", "trainer.strategy",
               "trainer.progress", "trainer.logger", "trainer.log_every_n_steps", "data.num_workers")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def config_changes(saved: dict, cfg: Config, free: tuple[str, ...] = RESUME_FREE) -> list[str]:
    """'key old → new' for each key of the resolved config `cfg` whose value differs from the
    recorded config `saved` (a Config.to_dict()), but those in `free`. A key `saved` lacks (it was
    recorded before the key existed) counts as its default."""
    then, default = _flat(saved if isinstance(saved, dict) else {}), _flat(Config().to_dict())
    changes = []
    for key, now in _flat(cfg.to_dict()).items():
        was = then.get(key, default.get(key))
        if key not in free and was != now:
            changes.append(f"{key} {was!r} → {now!r}")
    return changes


def data_fingerprint(images: np.ndarray, labels: np.ndarray) -> dict:
    """{"n_images", "fingerprint"}: a hash over the images' and labels' bytes (and shapes), recorded
    in each checkpoint, so a resumed run can tell whether it is given the data it trained on."""
    h = hashlib.blake2b(digest_size=16)
    images, labels = np.ascontiguousarray(images), np.ascontiguousarray(labels, dtype=np.int64)
    h.update(repr((images.shape, str(images.dtype), labels.shape)).encode())
    h.update(images.reshape(-1).view(np.uint8) if images.size else b"")  # no copy of the images
    h.update(labels.tobytes())
    return {"n_images": int(len(labels)), "fingerprint": h.hexdigest()}


def data_record(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """What a stage trained on (its checkpoint's `train_data`): the training images and, for
    fine-tuning, the validation images that select its best epoch."""
    return {"train": data_fingerprint(*train), **({"val": data_fingerprint(*val)} if val is not None else {})}


def resume_checkpoint(cfg: Config, out_dir: Path, resume: bool | str | None, kind: str, data: dict,
                      unlabelled: str | None = None) -> str | None:
    """The checkpoint a run continues from (None: a fresh start), once it is known to be this
    run's: the whole resolved config but RESUME_FREE and the stage's own epochs, the data by
    fingerprint (`data`: data_record of this run's), and for stage 1 its unlabelled images
    (`unlabelled`: their resolved spec, None for none). Any difference is refused in one line that
    names each (old → new), before the run writes anything."""
    if not resume:
        return None
    path = Path(out_dir) / "checkpoints" / "last.ckpt" if resume is True else Path(resume)
    if not path.is_file():
        raise ByelError(f"nothing to resume: {path} does not exist")
    meta = load_checkpoint(path, kinds=(kind,))["byel"]  # one clear line if truncated or foreign
    changes = config_changes(meta["config"], cfg, RESUME_FREE + (f"{kind}.epochs",))
    if kind == "pretrain" and (meta.get("unlabelled") or {}).get("data") != unlabelled:
        changes.append(f"unlabelled images {(meta.get('unlabelled') or {}).get('data')!r} → {unlabelled!r}")
    recorded = meta.get("train_data")
    if not isinstance(recorded, dict):  # a checkpoint from before byel recorded it
        print(f"byel: note: {path} does not record its training data (an older byel wrote it): the data "
              "could not be compared", file=sys.stderr)
    else:
        for part, now in data.items():
            was = recorded.get(part) or {}
            if was != now:
                changes.append(f"{'training' if part == 'train' else 'validation'} images "
                               f"{was.get('n_images', '?')} (fingerprint {str(was.get('fingerprint', '?'))[:12]}) → "
                               f"{now['n_images']} (fingerprint {now['fingerprint'][:12]})")
    if changes:
        raise CheckpointError(f"cannot resume from {path}: this run differs from it in " + "; ".join(changes)
                              + "; resume with the run's settings and data, or start a new run (another --out, "
                              "or --overwrite)")
    return str(path)


def check_classes(labels: np.ndarray, n_classes: int, what: str) -> None:
    """A run of `n_classes` classes trains (and is scored) on images of each: refuse a data set
    (`what` names it) that has none of one of them (e.g. 6-class data for --classes 7, whose
    neutral would never be learned and would count 0 in every macro-F1). Used where a user's data
    set is read for a run (byel pretrain, finetune, benchmark ablation); pretrain() and finetune()
    themselves take any arrays."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=n_classes)
    missing = [c for c, n in zip(class_names(n_classes), counts) if n == 0]
    if missing:
        hint = " (or --classes 6)" if n_classes > NUM_CLASSES and missing == ["neutral"] else ""
        raise DataError(f"{what} has no images of {', '.join(missing)}, one of the {n_classes} classes this run "
                        f"asks for (data.classes={n_classes}): give data with images of every class{hint}")


def _check_batches(n: int, batch_size: int, what: str) -> None:
    if n < 2:
        raise DataError(f"{what} has {n} image(s); BatchNorm training needs at least 2")
    if n < batch_size:
        log.warning("%s has %d images, fewer than the batch size %d", what, n, batch_size)


def _check_shares(n: int, trainer: L.Trainer, what: str) -> None:
    """Under DDP every process trains on its share of the n images: each needs two (BatchNorm)."""
    world = trainer.world_size
    if world > 1 and -(-n // world) < 2:
        raise DataError(f"{what} has {n} images for {world} processes: each needs at least 2; use fewer devices "
                        f"(--devices) or more images")


@contextmanager
def _run_folder(out_dir: Path, resume, overwrite: bool):
    """Hold out_dir for one run: locked for the run's duration (a second run into it is refused),
    refused when it holds another run unless resuming or replacing it (`overwrite`: its
    checkpoints are removed, so a stale best.ckpt cannot pass for this run's), and cleared of
    temporary files left by a write that was killed. A run that fails before its first
    checkpoint takes its config.yaml away again, so the folder does not pass for a run that
    only --overwrite or --resume may enter (e.g. after a start refused by the devices)."""
    with run_lock(out_dir):
        check_run_folder(out_dir, resume=bool(resume), overwrite=overwrite)
        ckpt_dir = out_dir / "checkpoints"
        held_a_run = run_in(out_dir) is not None
        if global_rank() == 0:
            remove_stale_temporaries(ckpt_dir)
            if overwrite and not resume:
                for old in ckpt_dir.glob("*.ckpt"):
                    old.unlink()
        try:
            yield
        except BaseException:
            if global_rank() == 0 and not held_a_run and not any(ckpt_dir.glob("*.ckpt")):
                (out_dir / "config.yaml").unlink(missing_ok=True)
            raise


def _fit(trainer: L.Trainer, model, dm, ckpt_path: str | None) -> None:
    """trainer.fit; Ctrl-C becomes byel.errors.Interrupted (Lightning catches the
    KeyboardInterrupt itself, stops cleanly and exits with status 1 and no word)."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    except SystemExit:
        if not trainer.interrupted:
            raise
    finally:  # Lightning ignores further Ctrl-C while it shuts down; give it back
        if handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, handler)
    if trainer.interrupted:
        raise Interrupted("resume with --resume")


def check_unlabelled_method(name: str) -> None:
    """Unlabelled images join the BYOL term; a method without one cannot use them."""
    if name == "supervised":
        raise ConfigError("method supervised has no term for unlabelled images; drop --unlabelled "
                          "(or use byel, byol-cls or byol)")


def stored_uses(uses: list[dict]) -> list[dict]:
    """Uses of real images as checkpoint metadata: fingerprints as int64 tensors (compact, and
    loadable with weights_only=True)."""
    return [{**u, "fingerprint": None if u.get("fingerprint") is None
             else torch.as_tensor(u["fingerprint"], dtype=torch.int64)} for u in uses]


SCHEDULES_FILE, SCHEDULES_PLOT = "schedules.npz", "schedules.png"


def save_schedules(schedules: dict[str, np.ndarray], out_dir: Path) -> None:
    """A run's schedules (byel.optim: "lr", and "tau" for the momentum methods, indexed by the
    global optimiser step) as out_dir/schedules.npz, and a plot of them, schedules.png; each
    written whole (a temporary file, then renamed)."""
    import matplotlib.pyplot as plt

    from byel.plots import save_figure  # (its import selects the headless backend)

    with written_whole(out_dir / SCHEDULES_FILE) as tmp, open(tmp, "wb") as f:
        np.savez(f, **schedules)
    labels = {"lr": "learning rate", "tau": "EMA τ"}
    fig, axes = plt.subplots(len(schedules), 1, figsize=(6, 2.2 * len(schedules)), sharex=True, squeeze=False)
    for ax, (name, values) in zip(axes[:, 0], schedules.items()):
        ax.plot(np.arange(len(values)), values, lw=1.2)
        ax.set_ylabel(labels.get(name, name))
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("optimiser step")
    fig.tight_layout()
    save_figure(fig, out_dir / SCHEDULES_PLOT)


class SaveSchedules(L.Callback):
    """Writes the module's schedules (computed once in configure_optimizers) beside the run when
    training starts, from the first process only."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)

    def on_train_start(self, trainer, pl_module):
        if trainer.is_global_zero:
            save_schedules(pl_module.schedules, self.out_dir)


def pretrain(cfg: Config, images: np.ndarray, labels: np.ndarray, out_dir: str | Path, resume=False,
             callbacks: list | None = None, overwrite: bool = True, unlabelled=None,
             generator_sources: list[dict] | None = None, split: dict | None = None,
             val: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """Stage 1 on labelled synthetic images. Returns the path of the final checkpoint.
    `callbacks`: extra Lightning callbacks (e.g. for monitoring). `overwrite` False refuses a
    folder that holds another run (the CLI's default); nothing in it is written before the
    resume check and the trainer settings pass.
    `unlabelled`: an ImageSet of unlabelled real images (byel.data.sources.load(..., unlabelled=True))
    for the BYOL term of byel, byol-cls and byol: a batch of them beside every labelled batch, the
    same steps and labelled data as without (supervised has no term for them: refused). The
    checkpoint's metadata records them (`unlabelled`: set, count, fingerprint; tier C).
    `generator_sources`: the real images behind the labelled ones (the training ImageSet's
    `real_uses`: warp faces' source faces), recorded the same way (`generator_sources`; tier C).
    `split`: the record of the held-out split the images come from (byel.data.split.holdout_split),
    written as split.json with config.yaml once every check has passed: a refused --resume (another
    setting or other data than the run's) writes nothing.
    `val`: the images (and labels) held out by that split: every epoch logs `val/macro_f1`, the
    method's own classifier on them (a detached linear probe for byol); the trained weights are
    those of a run without it. None (e.g. arrays with no split): nothing is scored.
    The LR and EMA schedules are written beside the run as schedules.npz and schedules.png."""
    quiet_lightning()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_batches(len(labels), cfg.data.batch_size, "the pre-training set")
    if unlabelled is not None:
        check_unlabelled_method(cfg.method.name)
        _check_batches(len(unlabelled), 2, "the unlabelled set")
    data = data_record((images, labels))
    with _run_folder(out_dir, resume, overwrite):
        ckpt_path = resume_checkpoint(cfg, out_dir, resume, "pretrain", data,
                                      unlabelled.spec if unlabelled is not None else None)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        model = create_method(cfg.to_dict())
        model.learned_from["train_data"] = data
        if unlabelled is not None:
            model.learned_from["unlabelled"] = {"data": unlabelled.spec, "n_images": int(len(unlabelled)),
                                                "fingerprint": fingerprint(unlabelled.images)}
        if generator_sources:
            model.learned_from["generator_sources"] = stored_uses(generator_sources)
        if val is not None and len(val[1]):
            model.set_heldout(*val)
        dm = ArrayDataModule((images, labels), batch_size=min(cfg.data.batch_size, len(labels)),
                             num_workers=cfg.data.num_workers, balanced=cfg.data.balanced,
                             unlabelled=None if unlabelled is None else unlabelled.images,
                             unlabelled_ratio=cfg.pretrain.unlabelled_ratio, seed=cfg.seed)
        trainer = build_trainer(cfg, out_dir, cfg.pretrain.epochs, callbacks=[SaveSchedules(out_dir), *(callbacks or [])])
        _check_shares(len(labels), trainer, "the pre-training set")
        if split is not None:
            save_split(split, out_dir)
        cfg.save(out_dir / "config.yaml")
        _fit(trainer, model, dm, ckpt_path)
        return _written(out_dir / "checkpoints" / "last.ckpt")


def finetune_config(cfg: Config, init_ckpt: dict) -> Config:
    """The stage-1 checkpoint decides the network (backbone, input size, normalisation); its class
    set must be this run's (data.classes)."""
    pre = init_ckpt["byel"]["config"]
    classes = init_ckpt["byel"]["classes"]
    if len(classes) != cfg.data.classes:
        raise CheckpointError(
            f"the stage-1 checkpoint was pre-trained for {len(classes)} classes ({', '.join(classes)}), this "
            f"fine-tune is for {cfg.data.classes}: fine-tune with --classes {len(classes)} "
            f"(data.classes={len(classes)}), or pre-train again with --classes {cfg.data.classes}")

    def saved(section: str, key: str, default=KeyError):
        value = pre.get(section, {}).get(key, default)
        if value is KeyError:  # a checkpoint from elsewhere, or edited
            raise CheckpointError(f"the stage-1 checkpoint's config has no {section}.{key}: not a byel checkpoint")
        return value

    for key in ("backbone", "width", "small_input"):
        setattr(cfg.model, key, saved("model", key))
    cfg.data.image_size = saved("data", "image_size")
    cfg.aug.mean, cfg.aug.std = tuple(saved("aug", "mean")), tuple(saved("aug", "std"))
    cfg.aug.normalize = saved("aug", "normalize", "dataset")
    return cfg


def finetune(
    cfg: Config,
    init: str | Path | None,
    images: np.ndarray,
    labels: np.ndarray,
    out_dir: str | Path,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    resume=False,
    overwrite: bool = True,
    generator_sources: list[dict] | None = None,
    split: dict | None = None,
) -> Path:
    """Stage 2. `init` is a stage-1 (or fine-tune) checkpoint whose online backbone starts the
    network (None = from scratch). `val` selects the best epoch: pass the split held out before
    stage 1 (byel.data.split.holdout_split, grouped by person). Without it, a split of `images`
    by image is used, which stage 1 may have trained on. Returns the path of the best checkpoint.
    `overwrite`: as for `pretrain`. `generator_sources`: the real images behind `images` and `val`
    (their ImageSets' `real_uses`), added to those the stage-1 checkpoint carries. `split`: as for
    `pretrain` (the record of the split that gave `images` and `val`)."""
    quiet_lightning()
    check_no_mesh(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    state, learned_from = None, {}
    if init is not None:
        ckpt = load_checkpoint(init)
        cfg = finetune_config(cfg, ckpt)
        state = backbone_state(ckpt)
        # the backbone's unlabelled real images stay on record (tier C)
        learned_from = {k: v for k, v in ckpt["byel"].items() if k in LEARNED_FROM}
    gen = add_uses(learned_from.get("generator_sources", []), generator_sources or [])
    if gen:  # the warp faces' source faces, stage 1's and this stage's own (tier C)
        learned_from["generator_sources"] = stored_uses(gen)
    if val is None:
        tr, va = stratified_split(labels, cfg.data.val_fraction, cfg.seed)
        val = (images[va], labels[va])
        images, labels = images[tr], labels[tr]
    _check_batches(len(labels), cfg.finetune.batch_size, "the fine-tuning set")
    data = data_record((images, labels), val)
    with _run_folder(out_dir, resume, overwrite):
        ckpt_path = resume_checkpoint(cfg, out_dir, resume, "finetune", data)
        model = FineTune(cfg.to_dict())
        model.learned_from.update(learned_from)
        model.learned_from["train_data"] = data
        if state is not None:
            model.backbone.load_state_dict(state)
        if cfg.finetune.head != "pixels":  # tier B: fitted on the synthetic training faces only
            from byel.faces.head import fit

            log.info("fitting the %s head's face-geometry part on %d synthetic faces", cfg.finetune.head, len(labels))
            head = fit(images, labels, "finetune-train", cfg.trainer.progress, n_classes=cfg.data.classes)
            model.geometry.load_state_dict(head.state_dict())
            if cfg.finetune.no_mesh == "activations":  # the faces without a mesh: the activation head
                from byel.faces.head import fit_activations

                log.info("fitting the activation head (faces without a mesh) on %d synthetic faces", len(labels))
                head = fit_activations(images, labels, "finetune-train", cfg.trainer.progress, n_classes=cfg.data.classes)
                model.activation_head.load_state_dict(head.state_dict())
        dm = ArrayDataModule((images, labels), val, batch_size=min(cfg.finetune.batch_size, len(labels)),
                             num_workers=cfg.data.num_workers, balanced=cfg.data.balanced)
        trainer = build_trainer(cfg, out_dir, cfg.finetune.epochs, monitor="val/macro_f1",
                                num_sanity_val_steps=0)
        _check_shares(len(labels), trainer, "the fine-tuning set")
        if split is not None:
            save_split(split, out_dir)
        cfg.save(out_dir / "config.yaml")
        _fit(trainer, model, dm, ckpt_path)
        best = out_dir / "checkpoints" / "best.ckpt"
        path = _written(best if best.exists() else out_dir / "checkpoints" / "last.ckpt")
    if cfg.finetune.head != "pixels" and global_rank() == 0:
        # the fusion weight of the selected network, chosen on the synthetic held-out split
        from byel.classifier import store_weight

        record = store_weight(path, *val, key="finetune-val", progress=cfg.trainer.progress)
        log.info("%s head: fusion weight %.1f (synthetic held-out macro-F1 by weight: %s)", cfg.finetune.head,
                 record["weight"], record["macro_f1_by_weight"])
    return path


def _written(path: Path) -> Path:
    """Success only with the promised artefact: a run that ended before writing its checkpoint
    is an error. (Under DDP rank 0 writes checkpoints; other ranks do not check.)"""
    if global_rank() == 0 and not path.is_file():
        raise ByelError(f"training ended without writing its checkpoint {path}; see the messages above")
    return path


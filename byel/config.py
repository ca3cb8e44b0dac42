"""Typed configuration: a preset YAML (byel/configs/<name>.yaml) → nested dataclasses, with
`section.key=value` overrides. Unknown keys are rejected with the nearest valid name, so a typo
never silently falls back to a default."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from byel.choices import BACKBONES, BACKENDS, HEADS, METHODS, NO_MESH
from byel.errors import ConfigError

PRESET_DIR = Path(__file__).parent / "configs"


@dataclass
class ModelConfig:
    backbone: str = "smallnet"
    # Channels of the first stage; 0 = the architecture's own (ResNets 64, smallnet 32). Checkpoints
    # record the value, so one saved with an explicit width rebuilds at that width.
    width: int = 0
    small_input: bool = True  # resnets: 3×3 stem without max-pool, for images ≤ 64 px
    proj_hidden: int = 4096
    proj_dim: int = 256
    pred_hidden: int = 4096


@dataclass
class MethodConfig:
    name: str = "byel"  # byel | byol-cls | byol | supervised
    ema_base: float = 0.99  # τ: target = τ·target + (1−τ)·online
    ema_schedule: str = "fixed"  # fixed (reference code) | cosine (BYOL: τ ramps to 1)
    evs_scale: float = 1.0  # EVS strength (1 = the paper)


@dataclass
class OptimConfig:
    optimizer: str = "lars"  # one of OPTIMIZERS
    lr: float = 0.2
    # data.batch_size is per process, so N processes step on N× the images. none: lr as given, at
    # any scale. linear: lr × world size × gradient accumulation = lr × global batch / batch_size
    # (the linear rule of Goyal et al. 2017, as BYOL scales LARS): lr stays the rate for one
    # process's data.batch_size, so a 1-process run is unchanged.
    lr_scaling: str = "none"
    weight_decay: float = 1.5e-6
    momentum: float = 0.9
    warmup_epochs: float = 10
    min_lr_ratio: float = 0.0  # cosine decays to lr·min_lr_ratio
    grad_clip: float = 0.0  # 0 = off
    nonfinite: str = "stop"  # a NaN/Inf loss: stop (keep the last good checkpoint) | skip the step


OPTIMIZERS = ("lars", "sgd", "adam", "adamw")  # byel.optim.build_optimizer
NORMALIZERS = ("dataset", "per-image", "equalize")  # input normalisations (byel.data.augment)


@dataclass
class AugConfig:
    crop_scale: tuple[float, float] = (0.2, 1.0)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 0.2)
    jitter_p: float = 0.3
    grayscale_p: float = 0.2
    blur_p: float = 0.2
    normalize: str = "dataset"  # one of NORMALIZERS: dataset (mean/std below) | per-image (zero mean, unit variance) | equalize (histogram equalisation per image)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass
class DataConfig:
    image_size: int = 128
    batch_size: int = 256
    num_workers: int = 0  # images live in memory as uint8; workers only help huge sets
    val_fraction: float = 0.1  # held-out synthetic split for fine-tuning model selection
    balanced: bool = False  # class-balanced sampling
    # 6: the six emotions; 7: the six and neutral (byel.classes.class_names). The classifiers'
    # outputs, the classes read from the data and the checkpoint's class list follow it.
    classes: int = 6


@dataclass
class PretrainConfig:
    epochs: int = 100
    # With unlabelled real images (--unlabelled): how many of them beside each labelled image in a
    # step (the unlabelled batch is this many labelled batches). The steps stay those of a run
    # without them; a larger ratio shows the real pool more often in the same steps.
    unlabelled_ratio: int = 1


@dataclass
class FinetuneConfig:
    epochs: int = 30
    optimizer: str = "adam"  # one of OPTIMIZERS
    lr: float = 1e-4
    weight_decay: float = 0.0
    dropout: float = 0.3
    batch_size: int = 256
    # one of HEADS: pixels (the CNN: tier A) | geometry | fused (+ the face-geometry head,
    # byel.classifier: tier B)
    head: str = "pixels"
    # one of NO_MESH, with head geometry | fused: what classifies a face without a mesh — pixels (the
    # CNN) | activations (a head on the landmark model's activation map, fitted as the geometry head)
    no_mesh: str = "pixels"


@dataclass
class GenerateConfig:
    backend: str = "procedural"
    per_class: int = 2000
    grey: bool = False
    sources: str | None = None  # warp backend: folder of unlabelled neutral faces
    # warp backend: multiple of the FACS displacement magnitudes. At 1 the features move by only a
    # pixel or two at 48 px; 2 transferred better to real faces (README, generator transfer table).
    warp_strength: float = 2.0
    workers: int = 2


@dataclass
class TrainerConfig:
    accelerator: str = "auto"  # cpu | gpu | auto
    devices: str = "auto"  # number of devices, a list like "0,1", or auto
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | ddp_spawn | ...
    # DDP on GPUs: BatchNorm statistics over the global batch, as in BYOL. PyTorch's SyncBatchNorm
    # is GPU-only, so on CPU processes each rank normalises with its own batch.
    sync_batchnorm: bool = True
    precision: str = "auto"  # auto = bf16-mixed on a GPU that has it, else 32-true; or any Lightning value
    log_every_n_steps: int = 20
    logger: str = "csv"  # csv | tensorboard | both | none
    progress: bool = True
    deterministic: bool = False


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 0
    preset: str = "default"

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def digest(self) -> str:
        """Short hash of the resolved config, recorded in reports (and the identity of an
        ablation run). data.classes counts only when not 6 and pretrain.unlabelled_ratio only when
        not 1, so a config keeps the digest it had before those keys existed."""
        d = self.to_dict()
        if d["data"]["classes"] == 6:
            del d["data"]["classes"]
        if d["pretrain"]["unlabelled_ratio"] == 1:
            del d["pretrain"]["unlabelled_ratio"]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the dataclass field's type, with a clear error."""
    origin = getattr(hint, "__origin__", None)
    try:
        if hint is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("true", "1", "yes", "on"):
                    return True
                if low in ("false", "0", "no", "off"):
                    return False
                raise ValueError(value)
            if not (isinstance(value, bool) or value in (0, 1)):  # not bool(5) or bool([...])
                raise ValueError(value)
            return bool(value)
        if hint in (int, float) and isinstance(value, bool):  # YAML's true is not the number 1
            raise ValueError(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if hint is float:
            return float(value)
        if hint is str:
            if isinstance(value, list) and all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in value):
                return ",".join(map(str, value))  # trainer.devices: [0, 1] as 0,1
            if isinstance(value, (list, dict, bool)):  # not "{'a': 1}" or "True"
                raise ValueError(value)
            return str(value)
        if origin is tuple:
            if isinstance(value, str):
                value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
            args = hint.__args__
            if len(value) != len(args):
                raise ValueError(f"expected {len(args)} values")
            return tuple(_coerce(v, t, key) for v, t in zip(value, args))
        # Optional[str] and similar unions
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return str(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(1e400)
        raise ConfigError(f"invalid value {value!r} for {key}") from None


def _unknown(key: str, valid: list[str]) -> ConfigError:
    near = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else f"; valid keys: {', '.join(valid)}"
    return ConfigError(f"unknown config key {key!r}{hint}")


def _all_keys(cfg: Config) -> list[str]:
    keys = []
    for f in dataclasses.fields(cfg):
        sub = getattr(cfg, f.name)
        if dataclasses.is_dataclass(sub):
            keys += [f"{f.name}.{g.name}" for g in dataclasses.fields(sub)]
        else:
            keys.append(f.name)
    return keys


def set_value(cfg: Config, dotted: str, value: Any) -> None:
    """Set `section.key` (or a top-level key) on cfg, validating the key and the value's type."""
    valid = _all_keys(cfg)
    if dotted not in valid:
        raise _unknown(dotted, valid)
    *path, leaf = dotted.split(".")
    target = cfg
    for p in path:
        target = getattr(target, p)
    hint = get_type_hints(type(target))[leaf]
    setattr(target, leaf, _coerce(value, hint, dotted))


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_config(preset: str | Path = "cpu-demo", overrides: dict[str, Any] | list[str] | None = None,
                _chain: tuple[Path, ...] = ()) -> Config:
    """Build a Config from a preset name or a YAML path, then apply overrides.

    overrides: {"optim.lr": 0.1} or ["optim.lr=0.1", ...] (the CLI's --set form).
    A preset may inherit another with `base: NAME` (or a YAML path); `_chain` holds the presets
    being read, so presets that name each other are refused instead of recursing forever.
    """
    if not isinstance(preset, (str, Path)) or not str(preset).strip():
        raise ConfigError(f"invalid preset {preset!r}: give a preset name ({', '.join(presets())}) or a YAML file")
    path = Path(preset).expanduser()
    if not path.suffix:
        path = PRESET_DIR / f"{preset}.yaml"
        if not path.exists():
            raise ConfigError(f"unknown preset {str(preset)!r}; choose one of: {', '.join(presets())}")
    elif not path.exists():
        raise ConfigError(f"config file not found: {path}")
    if path.resolve() in _chain:
        cycle = " → ".join(p.stem for p in (*_chain, path.resolve()))
        raise ConfigError(f"presets inherit each other in a cycle ({cycle}); fix the `base:` lines")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read {path}: not a text (UTF-8) YAML file") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    except (yaml.YAMLError, RecursionError) as e:
        raise ConfigError(f"cannot parse {path}: {(str(e).splitlines() or [type(e).__name__])[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of config sections")
    cfg = Config()
    cfg.preset = path.stem
    # A preset may inherit another: `base: cpu-demo`.
    base = raw.pop("base", None)
    if base:
        if not isinstance(base, str):
            raise ConfigError(f"{path}: base must be a preset name or a YAML file, got {base!r}")
        cfg = load_config(base, _chain=(*_chain, path.resolve()))
        cfg.preset = path.stem
    for key, value in _flatten(raw).items():
        set_value(cfg, key, value)
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = []
        for item in overrides or []:
            if "=" not in item:
                raise ConfigError(f"override {item!r} must look like section.key=value")
            k, v = item.split("=", 1)
            try:
                items.append((k.strip(), yaml.safe_load(v) if v.strip() else v))
            except yaml.YAMLError:
                raise ConfigError(f"invalid value in override {item!r}") from None
    for key, value in items:
        set_value(cfg, key, value)
    validate(cfg)
    return cfg


def from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a Config saved by `to_dict` (e.g. from a checkpoint)."""
    cfg = Config()
    for key, value in _flatten(d).items():
        if key in _all_keys(cfg):
            set_value(cfg, key, value)
    return cfg


# Upper bounds of numbers, shared by the command line (checked when parsed) and validate().
LIMITS = {
    "seed": 2**32 - 1,  # what numpy and Lightning accept
    "image_size": 1024,  # pixels per side
    "batch_size": 65536,
    "epochs": 100_000,
    "count": 10_000_000,  # images per class, steps, repeats, ...
    "lr": 100.0,
    "workers": 256,
    "devices": 1024,
    "nodes": 1024,
    "warp_strength": 20.0,
}
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
# Lightning's full and mixed precision values, and byel's auto (bf16-mixed on a GPU that has it,
# else 32-true). Not the "-true" 16/bf16/64 ones nor transformer-engine: they cast the weights but
# not byel's augmented float32 batches, and the first step fails.
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "32", "16", "bf16")


def check_devices(value: str) -> str:
    """trainer.devices: auto, a count (1, 2, ...) or distinct device indices like 0,1. Returns it tidied."""
    text = str(value).strip()
    if text == "auto":
        return text
    if "," not in text:
        if text.isdigit() and 1 <= int(text) <= LIMITS["devices"]:
            return text
        raise ConfigError(f"invalid trainer.devices {value!r}: use auto, a number 1–{LIMITS['devices']}, "
                          "or a list of device indices like 0,1")
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() and int(p) < LIMITS["devices"] for p in parts) or len(set(parts)) != len(parts):
        raise ConfigError(f"invalid trainer.devices {value!r}: a list must hold distinct device indices, like 0,1")
    return ",".join(parts)


def _devices_ok(value) -> bool:
    try:
        check_devices(value)
    except ConfigError:
        return False
    return True


# The range of every numeric config key, inclusive (a tuple value: each of its numbers), checked
# by validate() whatever set the value: a preset, --set, or a command-line option.
KEY_BOUNDS: dict[str, tuple[float, float]] = {
    "model.width": (0, 4096), "model.proj_hidden": (1, 65536), "model.proj_dim": (1, 65536),
    "model.pred_hidden": (1, 65536),
    "method.ema_base": (0, 1), "method.evs_scale": (0, 100),
    "optim.lr": (0, LIMITS["lr"]), "optim.weight_decay": (0, 1), "optim.momentum": (0, 1),
    "optim.warmup_epochs": (0, LIMITS["epochs"]), "optim.min_lr_ratio": (0, 1), "optim.grad_clip": (0, 1e6),
    "aug.crop_scale": (0, 1), "aug.flip_p": (0, 1), "aug.jitter": (0, 1), "aug.jitter_p": (0, 1),
    "aug.grayscale_p": (0, 1), "aug.blur_p": (0, 1), "aug.mean": (0, 1), "aug.std": (1e-6, 10),
    "data.image_size": (16, LIMITS["image_size"]), "data.batch_size": (2, LIMITS["batch_size"]),
    "data.num_workers": (0, LIMITS["workers"]), "data.val_fraction": (0, 1),
    "data.classes": (6, 7),  # byel.classes.CLASS_COUNTS
    "pretrain.epochs": (1, LIMITS["epochs"]), "pretrain.unlabelled_ratio": (1, 64),
    "finetune.epochs": (1, LIMITS["epochs"]),  # 0 epochs would write no checkpoint
    "finetune.lr": (0, LIMITS["lr"]), "finetune.weight_decay": (0, 1),
    "finetune.dropout": (0, 0.999), "finetune.batch_size": (2, LIMITS["batch_size"]),
    "generate.per_class": (1, LIMITS["count"]), "generate.warp_strength": (0, LIMITS["warp_strength"]),
    "generate.workers": (1, LIMITS["workers"]),
    "trainer.num_nodes": (1, LIMITS["nodes"]), "trainer.log_every_n_steps": (1, 1_000_000),
    "seed": (0, LIMITS["seed"]),
}


def _out_of_bounds(cfg: Config) -> str | None:
    for key, (lo, hi) in KEY_BOUNDS.items():
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if not all(lo <= v <= hi for v in (value if isinstance(value, tuple) else (value,))):  # NaN fails too
            return f"{key} must be in {lo:,g}–{hi:,g} (got {value})"
    return None


def validate(cfg: Config) -> None:
    bad_number = _out_of_bounds(cfg)
    checks = [
        (bad_number is None, bad_number),
        (0 < cfg.generate.warp_strength, f"generate.warp_strength must be > 0 (got {cfg.generate.warp_strength})"),
        (cfg.aug.jitter[3] <= 0.5, f"aug.jitter's hue (the 4th value) must be ≤ 0.5 (got {cfg.aug.jitter[3]})"),
        (_devices_ok(cfg.trainer.devices), f"invalid trainer.devices {cfg.trainer.devices!r}: use auto, a count, or indices like 0,1"),
        (cfg.data.image_size >= 16, f"data.image_size must be ≥ 16 (got {cfg.data.image_size})"),
        (cfg.data.batch_size >= 2, f"data.batch_size must be ≥ 2 for BatchNorm (got {cfg.data.batch_size})"),
        (cfg.finetune.batch_size >= 2, f"finetune.batch_size must be ≥ 2 (got {cfg.finetune.batch_size})"),
        (cfg.pretrain.epochs >= 1, f"pretrain.epochs must be ≥ 1 (got {cfg.pretrain.epochs})"),
        (cfg.finetune.epochs >= 0, f"finetune.epochs must be ≥ 0 (got {cfg.finetune.epochs})"),
        (cfg.optim.lr > 0, f"optim.lr must be > 0 (got {cfg.optim.lr})"),
        (cfg.finetune.lr > 0, f"finetune.lr must be > 0 (got {cfg.finetune.lr})"),
        (0 <= cfg.method.ema_base <= 1, f"method.ema_base must be in [0, 1] (got {cfg.method.ema_base})"),
        (0 < cfg.data.val_fraction < 1, f"data.val_fraction must be in (0, 1) (got {cfg.data.val_fraction})"),
        (cfg.generate.per_class >= 1, f"generate.per_class must be ≥ 1 (got {cfg.generate.per_class})"),
        (0 < cfg.aug.crop_scale[0] <= cfg.aug.crop_scale[1] <= 1, "aug.crop_scale must satisfy 0 < a ≤ b ≤ 1"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
    choices = {
        "method.ema_schedule": (cfg.method.ema_schedule, ["fixed", "cosine"]),
        "optim.optimizer": (cfg.optim.optimizer, list(OPTIMIZERS)),
        "optim.lr_scaling": (cfg.optim.lr_scaling, ["none", "linear"]),
        "finetune.optimizer": (cfg.finetune.optimizer, list(OPTIMIZERS)),
        "finetune.head": (cfg.finetune.head, list(HEADS)),
        "finetune.no_mesh": (cfg.finetune.no_mesh, list(NO_MESH)),
        "trainer.logger": (cfg.trainer.logger, ["csv", "tensorboard", "both", "none"]),
        "trainer.accelerator": (cfg.trainer.accelerator, list(ACCELERATORS)),
        "trainer.precision": (str(cfg.trainer.precision), list(PRECISIONS)),
        "generate.backend": (cfg.generate.backend, list(BACKENDS)),
        "aug.normalize": (cfg.aug.normalize, list(NORMALIZERS)),
        "optim.nonfinite": (cfg.optim.nonfinite, ["stop", "skip"]),
    }
    for key, (value, valid) in choices.items():
        if value not in valid:
            raise ConfigError(f"invalid {key} {value!r}; choose one of: {', '.join(valid)}")
    METHODS.check(cfg.method.name)
    BACKBONES.check(cfg.model.backbone)
    if cfg.trainer.logger in ("tensorboard", "both") and not _tensorboard_installed():
        raise ConfigError(f"trainer.logger={cfg.trainer.logger} needs TensorBoard: pip install 'byel[tensorboard]'")


def check_no_mesh(cfg: Config) -> None:
    """finetune.no_mesh other than pixels only with a face-geometry head (it would change nothing
    else). Checked once the whole config is known (the command line's --head comes after --set)."""
    if cfg.finetune.no_mesh != "pixels" and cfg.finetune.head == "pixels":
        raise ConfigError(f"finetune.no_mesh={cfg.finetune.no_mesh} needs a face-geometry head: "
                          "add --head fused (finetune.head=fused) or geometry")


def _tensorboard_installed() -> bool:
    # What Lightning's TensorBoardLogger can write with: tensorboard or tensorboardX.
    return any(importlib.util.find_spec(m) is not None for m in ("tensorboard", "tensorboardX"))

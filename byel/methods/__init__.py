"""Stage-1 methods by name. One registry, one data path, one code path:

- `byel`      BYOL + emotion classifier W (+BN) + orthogonality loss + Emotion Vector Subtraction
- `byol-cls`  the same without EVS
- `byol`      plain BYOL
- `supervised` backbone + linear head, cross-entropy only (the baseline)

This module holds names only and loads the classes on first use: byel.config checks
`method.name` with `check_method` without importing the methods, which import byel.config.
"""

from __future__ import annotations

import importlib

from byel.errors import ConfigError

# name -> (class name, keyword arguments that select the variant)
VARIANTS: dict[str, tuple[str, dict]] = {
    "byel": ("BYEL", dict(classifier=True, evs=True)),
    "byol-cls": ("BYEL", dict(classifier=True, evs=False)),
    "byol": ("BYEL", dict(classifier=False, evs=False)),
    "supervised": ("Supervised", {}),
}

# exported name -> the module that defines it
_LAZY = {
    "PretrainMethod": "byel.methods.base",
    "BYEL": "byel.methods.byel",
    "Supervised": "byel.methods.supervised",
    "FineTune": "byel.methods.finetune",
}


def check_method(name: str) -> None:
    if name not in VARIANTS:
        raise ConfigError(f"invalid method.name {name!r}; choose one of: {', '.join(sorted(VARIANTS))}")


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "METHODS":  # name -> (class, variant keyword arguments)
        return {n: (__getattr__(cls), variant) for n, (cls, variant) in VARIANTS.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def create_method(config: dict):
    """Instantiate the stage-1 method named by config['method']['name']."""
    check_method(config["method"]["name"])
    cls, variant = VARIANTS[config["method"]["name"]]
    return __getattr__(cls)(config, **variant)


__all__ = ["METHODS", "VARIANTS", "check_method", "create_method", "PretrainMethod", "BYEL", "Supervised", "FineTune"]

"""Stage-1 methods by name. One registry, one data path, one code path:

- `byel`      BYOL + emotion classifier W (+BN) + orthogonality loss + Emotion Vector Subtraction
- `byol-cls`  the same without EVS
- `byol`      plain BYOL
- `supervised` backbone + linear head, cross-entropy only (the baseline)

The names and the class behind each live in `byel.choices.METHODS` (torch-free); this module
loads the classes on first use.
"""

from __future__ import annotations

import importlib

from byel.choices import METHODS as REGISTRY

VARIANTS = REGISTRY.names  # the method names (the registry itself lives in byel.choices, torch-free)

# exported name -> the module that defines it
_LAZY = {
    "PretrainMethod": "byel.methods.base",
    "BYEL": "byel.methods.byel",
    "Supervised": "byel.methods.supervised",
    "FineTune": "byel.methods.finetune",
    "Classifier": "byel.methods.classifier",
}


def check_method(name: str) -> None:
    REGISTRY.check(name)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "METHODS":  # name -> (class, variant keyword arguments)
        return {n: (REGISTRY.get(n), REGISTRY.options(n)) for n in REGISTRY}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def create_method(config: dict):
    """Instantiate the stage-1 method named by config['method']['name']."""
    return REGISTRY.create(config["method"]["name"], config)


__all__ = ["METHODS", "VARIANTS", "check_method", "create_method", "PretrainMethod", "BYEL", "Supervised", "FineTune", "Classifier"]

"""Stage-1 methods by name. One registry, one data path, one code path:

- `byel`      BYOL + emotion classifier W (+BN) + orthogonality loss + Emotion Vector Subtraction
- `byol-cls`  the same without EVS
- `byol`      plain BYOL
- `supervised` backbone + linear head, cross-entropy only (the baseline)
"""

from byel.methods.base import PretrainMethod
from byel.methods.byel import BYEL
from byel.methods.finetune import FineTune
from byel.methods.supervised import Supervised

# name -> (class, keyword arguments that select the variant)
METHODS: dict[str, tuple[type[PretrainMethod], dict]] = {
    "byel": (BYEL, dict(classifier=True, evs=True)),
    "byol-cls": (BYEL, dict(classifier=True, evs=False)),
    "byol": (BYEL, dict(classifier=False, evs=False)),
    "supervised": (Supervised, {}),
}


def create_method(config: dict) -> PretrainMethod:
    """Instantiate the stage-1 method named by config['method']['name']."""
    cls, variant = METHODS[config["method"]["name"]]
    return cls(config, **variant)


__all__ = ["METHODS", "create_method", "PretrainMethod", "BYEL", "Supervised", "FineTune"]

"""Adaptation to real faces without their labels (tier C: + unlabelled real images).

Every method takes a fine-tuned model and unlabelled images and returns an adapted model; `byel
adapt` (byel.adapt.run) writes it as a fine-tuned checkpoint whose metadata says how it was made.
One short module per method, behind the registry below:

- `adabn`       BatchNorm statistics re-estimated on the images (Li et al. 2016), no weight touched
- `tent`        entropy minimisation of the BatchNorm affine parameters (Wang et al., ICLR 2021)
- `shot-im`     information maximisation on the backbone, classifier frozen (Liang et al., ICML 2020)
- `self-train`  rounds of the pixel CNN's class-balanced confident pseudo-labels, mixed with the
                synthetic labelled set
- `co-train`    a geometry or fused head's views (pixel CNN, face-geometry head, and the activation
                head where the model has one) label their confident faces for each other, in rounds
                (Blum & Mitchell 1998; with three views, tri-training's rule); tier B+C
- `prior`       a class-prior correction of the outputs, no weight touched: the predictions on the
                images balanced to the training prior (byel.adapt.prior)
- `prior-em`    the same with Saerens et al.'s EM estimate of the images' class prior
"""

from __future__ import annotations

import functools
import importlib

from byel.choices import ADAPT_METHODS as METHODS
from byel.choices import ADAPT_OUTPUTS_ONLY as OUTPUTS_ONLY  # they change no weight: no AdaBN round
from byel.choices import ADAPT_WITH_SYNTHETIC as SYNTHETIC  # they mix in a labelled synthetic set (--synthetic)


def method(name: str):
    """The `adapt(model, images, opts, monitor)` function of the method called `name` (with its
    variant's options, e.g. prior-em's estimate)."""
    fn, options = METHODS.get(name), METHODS.options(name)
    return functools.partial(fn, **options) if options else fn


def __getattr__(name: str):
    # Loaded on first use, so the command line can name the methods without importing torch.
    if name in ("adapt_batchnorm", "adaptation_set"):
        return getattr(importlib.import_module("byel.adapt.adabn"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["METHODS", "OUTPUTS_ONLY", "SYNTHETIC", "adapt_batchnorm", "adaptation_set", "method"]

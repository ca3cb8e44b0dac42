"""The names a user can choose, and where the code behind each name lives.

One mechanism for every choice (stage-1 methods, backbones, generator backends, adaptation
methods, fine-tuned heads, face detectors): a `Registry` maps a name to ``"module:attr"`` and
imports that only when the name is used. This module is torch-free and imports nothing of byel
but its errors, so the configuration check and the command line's help name every choice without
loading a model (timm's registry, made lazy).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Iterator

from byel.errors import ConfigError


class Registry:
    """name -> ``"module:attr"`` (imported on first use) or an object registered at run time,
    plus optional keyword arguments that select a variant (e.g. byol-cls is BYEL without EVS)."""

    def __init__(self, what: str, entries: dict[str, str | tuple[str, dict]]):
        self.what = what  # how a message names a wrong choice, e.g. "unknown backbone"
        self._entries: dict[str, tuple[str | Any, dict]] = {
            name: (target, {}) if isinstance(target, str) else (target[0], dict(target[1]))
            for name, target in entries.items()
        }

    # --- names (no import) -------------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def check(self, name: str) -> str:
        """name, or a ConfigError listing the valid ones."""
        if name not in self._entries:
            raise ConfigError(f"{self.what} {name!r}; choose one of: {', '.join(self._entries)}")
        return name

    def options(self, name: str) -> dict:
        """The keyword arguments that select the variant `name` (often none)."""
        return dict(self._entries[self.check(name)][1])

    # --- code (imported on first use) ---------------------------------------------------------
    def get(self, name: str) -> Any:
        """The object behind `name`: its module is imported now."""
        target, _ = self._entries[self.check(name)]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            return getattr(importlib.import_module(module), attr) if attr else importlib.import_module(module)
        return target

    def create(self, name: str, *args, **kwargs) -> Any:
        """Call the object behind `name` with its variant options and the given arguments."""
        return self.get(name)(*args, **{**self.options(name), **kwargs})

    def register(self, name: str, target: str | Callable | None = None, **options):
        """Add a choice: ``register("mynet", "pkg.mod:build")``, or as a decorator
        ``@registry.register("mynet")``."""
        if target is None:
            def deco(obj):
                self._entries[name] = (obj, options)
                return obj

            return deco
        self._entries[name] = (target, options)
        return target


# Stage-1 methods (byel.methods): one class per file, variants by keyword.
METHODS = Registry("invalid method.name", {
    "byel": ("byel.methods.byel:BYEL", dict(classifier=True, evs=True)),
    "byol": ("byel.methods.byel:BYEL", dict(classifier=False, evs=False)),
    "byol-cls": ("byel.methods.byel:BYEL", dict(classifier=True, evs=False)),
    "supervised": "byel.methods.supervised:Supervised",
})

# Backbones (byel.models.backbones); `BACKBONES.register` adds more.
BACKBONES = Registry("unknown backbone", {
    "resnet18": "byel.models.backbones:resnet18",
    "resnet50": "byel.models.backbones:resnet50",
    "smallnet": "byel.models.backbones:smallnet",
})

# Synthetic-face generator backends (byel.synth).
BACKENDS = Registry("unknown backend", {
    "procedural": "byel.synth.procedural:ProceduralBackend",
    "warp": "byel.synth.warp:WarpBackend",
    "mesh": "byel.synth.mesh:MeshBackend",
})
FROM_REAL = ("warp", "mesh")  # backends whose faces are made of real source faces: tier C

# Label-free adaptation methods (byel.adapt): each module defines adapt(model, images, opts, monitor).
ADAPT_METHODS = Registry("unknown adaptation method", {
    "adabn": "byel.adapt.adabn:adapt",
    "tent": "byel.adapt.tent:adapt",
    "shot-im": "byel.adapt.shot_im:adapt",
    "self-train": "byel.adapt.self_train:adapt",
    "co-train": "byel.adapt.co_train:adapt",
    "prior": ("byel.adapt.prior:adapt", dict(estimate="balance")),
    "prior-em": ("byel.adapt.prior:adapt", dict(estimate="em")),
})
ADAPT_WITH_SYNTHETIC = ("self-train", "co-train")  # they mix in a labelled synthetic set (--synthetic)
ADAPT_OUTPUTS_ONLY = ("prior", "prior-em")  # a class-prior correction of the outputs: no weight, no AdaBN round

# Fine-tuned classifier heads: pixels (the CNN: tier A) | geometry | fused (+ the face-geometry
# head on MediaPipe's landmarker: tier B).
HEADS = ("pixels", "geometry", "fused")
# What classifies a face without a mesh in a geometry | fused model (``finetune.no_mesh``): the
# pixel CNN (as always), or a head on the landmark model's activation map (byel.faces.activations:
# tier B), which every face has.
NO_MESH = ("pixels", "activations")

# Face detectors of `byel predict` / the API / `byel serve`.
DETECTORS = ("auto", "landmarker", "opencv-haar", "dlib-hog")

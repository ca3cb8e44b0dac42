"""FACS action-unit model shared by both generator backends.

Each emotion is a *distribution* over action-unit (AU) intensities built from the EMFACS
prototypes. A sample has a global intensity (subtle to extreme), per-AU jitter, optional AUs
drawn with a probability, occasional dropped core AUs (partial expressions) and weak leakage
of AUs from other emotions (mixed expressions), so the classes overlap the way real faces do.

Intensities are floats in [0, 1]; 0 means the AU is absent. The renderers turn them into
geometry (procedural) or displacement fields (warp). Neutral (the seventh class of a 7-class
run) is the face with no AU at all; its identity and nuisances are drawn as for any class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from byel.classes import CLASSES, NEUTRAL

# The AUs the renderers know, in a fixed order (manifest columns follow it).
AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 15, 16, 17, 20, 23, 24, 25, 26, 27)

AU_NAMES: dict[int, str] = {
    1: "inner brow raiser", 2: "outer brow raiser", 4: "brow lowerer", 5: "upper lid raiser",
    6: "cheek raiser", 7: "lid tightener", 9: "nose wrinkler", 10: "upper lip raiser",
    12: "lip corner puller", 15: "lip corner depressor", 16: "lower lip depressor",
    17: "chin raiser", 20: "lip stretcher", 23: "lip tightener", 24: "lip pressor",
    25: "lips part", 26: "jaw drop", 27: "mouth stretch",
}


@dataclass(frozen=True)
class Prototype:
    """EMFACS prototype: core AUs (with relative weight) and optional AUs (with probability)."""

    core: dict[int, float]
    optional: dict[int, float]  # AU -> probability of appearing
    # Alternative core sets: one is chosen per sample (e.g. disgust 9 vs 10).
    alternatives: tuple[dict[int, float], ...] = ()


PROTOTYPES: dict[str, Prototype] = {
    "happiness": Prototype(core={6: 0.8, 12: 1.0}, optional={25: 0.55, 26: 0.2}),
    "sadness": Prototype(core={1: 1.0, 4: 0.7, 15: 1.0}, optional={17: 0.5, 6: 0.15}),
    "surprise": Prototype(core={1: 1.0, 2: 1.0, 5: 0.6, 26: 1.0}, optional={25: 0.9, 27: 0.35}),
    "fear": Prototype(
        core={1: 1.0, 2: 0.8, 4: 0.8, 5: 1.0, 7: 0.5, 20: 1.0},
        optional={25: 0.8, 26: 0.6},
    ),
    "anger": Prototype(
        core={4: 1.0, 5: 0.6, 7: 0.9, 23: 0.9},
        optional={24: 0.5, 17: 0.3, 10: 0.25, 25: 0.3, 26: 0.15},
    ),
    "disgust": Prototype(
        core={15: 0.6, 16: 0.5},
        optional={17: 0.35, 4: 0.4, 25: 0.4, 7: 0.3},
        alternatives=({9: 1.0, 10: 0.6}, {10: 1.0, 9: 0.3}),
    ),
}


@dataclass(frozen=True)
class AUSampler:
    """Draws AU intensity vectors for an emotion.

    intensity: range of the global expression intensity (subtle .. extreme).
    jitter: relative per-AU noise.
    drop_core: probability of dropping each core AU (partial expressions).
    leak: probability of adding one weak AU from another emotion (mixed expressions).
    """

    intensity: tuple[float, float] = (0.4, 1.0)
    jitter: float = 0.25
    drop_core: float = 0.1
    leak: float = 0.3
    leak_scale: float = 0.35

    def sample(self, emotion: str, rng: np.random.Generator) -> dict[int, float]:
        if emotion == NEUTRAL:  # draws nothing: the renderer's draws from rng stay as for any class
            return {au: 0.0 for au in AUS}
        proto = PROTOTYPES[emotion]
        core = dict(proto.core)
        if proto.alternatives:
            core.update(proto.alternatives[rng.integers(len(proto.alternatives))])
        s = rng.uniform(*self.intensity)
        out = {au: 0.0 for au in AUS}
        kept = [au for au in core if rng.random() >= self.drop_core]
        if len(kept) < max(1, len(core) // 2):  # never drop so much that nothing is left
            kept = list(core)
        for au in kept:
            out[au] = core[au] * s * (1 + self.jitter * rng.standard_normal())
        for au, p in proto.optional.items():
            if rng.random() < p:
                out[au] = max(out[au], s * rng.uniform(0.4, 1.0))
        if rng.random() < self.leak:
            others = [e for e in CLASSES if e != emotion]
            other = PROTOTYPES[others[rng.integers(len(others))]]
            au = list(other.core)[rng.integers(len(other.core))]
            if out[au] == 0.0:
                out[au] = self.leak_scale * rng.uniform(0.2, 1.0)
        # Mouth opening AUs nest: 27 implies 26 implies 25.
        out[26] = max(out[26], 0.8 * out[27])
        out[25] = max(out[25], 0.8 * out[26])
        return {au: min(max(float(v), 0.0), 1.0) for au, v in out.items()}  # np.clip is slow on scalars


def as_vector(aus: dict[int, float]) -> np.ndarray:
    """AU dict -> float32 vector in the order of AUS."""
    return np.array([aus.get(au, 0.0) for au in AUS], dtype=np.float32)

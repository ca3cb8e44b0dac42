"""A class-prior correction of a model's outputs, estimated on unlabelled images (tier C): no
weight changes, no label is read. The adapted checkpoint records r = log π'/π (one number a
class) and byel.classifier re-weights every final prediction, p'(c|x) ∝ p(c|x)·exp(r_c).

Two estimates of r, from the model's final probabilities p(c|x) on the images (fused with the
geometry head where the model has one; unmirrored, as `byel evaluate` scores):

- ``prior`` (``balance``): the r that makes the mean corrected prediction over the images equal
  the training prior π (uniform: byel's generator renders as many faces of each class), i.e. the
  user's images are assumed to hold the classes about as often as the training data did. A
  convex problem (r minimises mean_x logsumexp(log p(·|x) + r) - π·r), solved by the fixed point
  r ← r + log(π / mean_x p'(·|x)) (Sinkhorn-like). It removes a model's bias towards some
  classes on a new domain, whatever its cause.
- ``prior-em`` (``em``): the maximum-likelihood target prior π' of Saerens, Latinne &
  Decaestecker (2002, "Adjusting the outputs of a classifier to new a priori probabilities"):
  EM, π' ← mean_x p'(·|x) with p'(c|x) ∝ p(c|x)·π'_c/π_c. Right under pure label shift (the
  model calibrated, only the class mix changed); where the model is biased on the new domain it
  takes that bias for a class mix and amplifies it (measured for the shipped model:
  benchmarks/results/class_prior.md).

Guards: at most MAX_ITER iterations; every class keeps a ratio π'_c/π_c within
[1/MAX_RATIO, MAX_RATIO] (EM: a floor π'_c ≥ π_c/MAX_RATIO, so no class is switched off), and
the collapse guard of every adaptation (``--max-class-share``) on the corrected predictions.
"""

from __future__ import annotations

import math

import numpy as np

from byel.adapt.common import Options
from byel.classifier import apply_prior, face_probs

MAX_ITER = 100
TOL = 1e-4  # balance: the largest gap of a class's mean corrected prediction to its prior (one image in 10,000)
EM_TOL = 1e-6  # em: the largest change of a class's prior in one iteration
MAX_RATIO = 10.0  # π'_c/π_c within [1/10, 10]: |r_c| ≤ log 10
NAMES = {"balance": "prior", "em": "prior-em"}  # estimate -> its method's name (byel.choices)
ESTIMATES = tuple(NAMES)


def uniform(n: int) -> np.ndarray:
    return np.full(n, 1.0 / n)


def _check(probs: np.ndarray, prior: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or not len(p):
        raise ValueError(f"probabilities (N, C) of at least one image, got shape {p.shape}")
    pi = uniform(p.shape[1]) if prior is None else np.asarray(prior, np.float64)
    if pi.shape != (p.shape[1],) or (pi <= 0).any():
        raise ValueError(f"a training prior of {p.shape[1]} positive numbers, got {pi}")
    return p, pi / pi.sum()


def balance(probs: np.ndarray, prior: np.ndarray | None = None, max_iter: int = MAX_ITER, tol: float = TOL,
            max_ratio: float = MAX_RATIO) -> tuple[np.ndarray, int]:
    """(r, iterations): the log ratio with mean_x apply_prior(probs, r) = `prior` (default
    uniform), |r_c| ≤ log max_ratio, r centred (its mean is 0: a common shift changes nothing)."""
    p, pi = _check(probs, prior)
    r = np.zeros(p.shape[1])
    bound = math.log(max_ratio)
    for it in range(1, max_iter + 1):
        w = p * np.exp(r)
        mean = (w / w.sum(1, keepdims=True)).mean(0)
        if np.abs(mean - pi).max() < tol:
            return r, it - 1
        r = r + np.log(pi / np.maximum(mean, 1e-12))
        r = np.clip(r - r.mean(), -bound, bound)
    return r, max_iter


def _floored(q: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """q (summing to 1) with every q_c ≥ floor_c, still summing to 1: the classes below their
    floor raised to it, the others scaled down together (repeated while that pushes one below)."""
    low = np.zeros(len(q), bool)
    for _ in range(len(q)):
        low |= q < floor
        if low.all():
            return floor / floor.sum()
        q = np.where(low, floor, q * (1 - floor[low].sum()) / q[~low].sum())
        if not (q < floor - 1e-15).any():
            break
    return q


def em(probs: np.ndarray, prior: np.ndarray | None = None, max_iter: int = MAX_ITER, tol: float = EM_TOL,
       max_ratio: float = MAX_RATIO) -> tuple[np.ndarray, np.ndarray, int]:
    """(π', r = log π'/π, iterations): Saerens et al.'s EM for the target prior π' given the
    posteriors `probs` of a model trained with prior `prior` (default uniform), with the floor
    π'_c ≥ π_c / max_ratio (then renormalised)."""
    p, pi = _check(probs, prior)
    q = pi.copy()
    it = 0
    for it in range(1, max_iter + 1):
        w = p * (q / pi)
        new = (w / w.sum(1, keepdims=True)).mean(0)
        new = _floored(new, pi / max_ratio)
        done = np.abs(new - q).max() < tol
        q = new
        if done:
            break
    return q, np.log(q / pi), it


def adapt(model, images: np.ndarray, opts: Options, monitor, estimate: str = "balance") -> None:
    """The `prior` and `prior-em` methods of byel.adapt: the log ratio estimated on the model's
    final probabilities on `images`, added to the model's adaptations (so byel.classifier
    applies it); its weights are untouched. Rounds: 0 the predictions before, 1 after."""
    if estimate not in ESTIMATES:
        raise ValueError(f"estimate {estimate!r}: one of {ESTIMATES}")
    probs = face_probs(model, images)  # already corrected if the checkpoint has a prior: r adds up
    monitor.record(probs, "before (the model's predictions)", check=False)
    pi = uniform(probs.shape[1])
    if estimate == "balance":
        r, iterations = balance(probs, pi)
        extra = {"estimate": "balance: mean corrected prediction = the training prior"}
    else:
        q, r, iterations = em(probs, pi)
        extra = {"estimate": "em: Saerens et al. 2002", "target_prior": [round(float(v), 6) for v in q]}
    r = r - r.mean()
    monitor.extra.update({
        **extra, "training_prior": [round(float(v), 6) for v in pi],
        "log_prior_ratio": [round(float(v), 6) for v in r], "iterations": iterations, "max_iter": MAX_ITER,
        "converged": iterations < MAX_ITER,
        "max_ratio": MAX_RATIO, "estimated_on": "final probabilities (fused where the model has a geometry head), "
                                                "unmirrored"})
    monitor.record(apply_prior(probs, r), "after the class-prior correction")
    meta = getattr(model, "checkpoint_meta", None) or {}
    # the in-memory model applies it at once (byel adapt writes the full record into the checkpoint)
    model.checkpoint_meta = {**meta, "adaptations": [*meta.get("adaptations", []),
                                                     {"method": NAMES[estimate], "log_prior_ratio": monitor.extra["log_prior_ratio"]}]}
    monitor.adapted = model.eval()

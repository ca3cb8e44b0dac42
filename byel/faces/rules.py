"""A zero-training baseline: the six EMFACS prototypes scored on MediaPipe's 52 blendshapes.

No learning at all: no fitted weight, no threshold, nothing tuned on any label. Each action unit
(AU) of the prototypes is read from the blendshapes that name the same movement (AU_BLENDSHAPES,
a table; a left/right pair is averaged), and each emotion's score is the **mean** of its
prototype's AU intensities (PROTOTYPES). Both choices were made a priori: the mean keeps every
score in [0, 1] whatever the prototype's size and lets a partly shown expression still score
(a minimum would zero it for one missing AU). The prediction is the arg-max; the probabilities
are the scores normalised to sum to 1 (no temperature to choose).

Some blendshapes do not rest at 0 on a face showing nothing (eyeSquint reads about 0.3 on a
neutral face), which favours the prototypes holding them. ``rest``, optional, takes that away:
the AU intensities a face with no AU reads (``rest_level`` of synthetic neutral faces, never of
a labelled real face), subtracted from every face's and clipped at 0.

    from byel.faces import measure_images
    from byel.faces.rules import probabilities, predict
    meshes = measure_images(crops)
    probs = probabilities(meshes.blendshapes)   # (N, 6) in byel.classes.CLASSES order
    pred = predict(meshes.blendshapes)          # (N,) class index, -1 where no mesh was found

A face without a mesh (a NaN row of blendshapes) has no score: ``prototype_scores`` and
``au_intensities`` keep its row NaN, ``predict`` says -1 (the benchmark counts it as a miss, an
error, as benchmarks/geometry_transfer.py does) and ``probabilities`` gives it chance, 1/6 each.

Results that use it are tier B: the blendshapes come from Google's Face Landmarker, trained on
real faces for geometry (it knows no expression class).
"""

from __future__ import annotations

import numpy as np

from byel.classes import CLASSES
from byel.faces.mesher import BLENDSHAPES

# The EMFACS prototypes (Friesen & Ekman's emotion prediction table, the forms commonly quoted):
# emotion -> its action units.
PROTOTYPES: dict[str, tuple[int, ...]] = {
    "happiness": (6, 12),
    "sadness": (1, 4, 15),
    "surprise": (1, 2, 5, 26),
    "fear": (1, 2, 4, 5, 7, 20, 26),
    "anger": (4, 5, 7, 23),
    "disgust": (9, 15, 16),
}

# AU -> (FACS name, the blendshapes read for it, why). A pair Left/Right is the same movement on
# the subject's two sides: its intensity is their mean. The blendshapes are ARKit's, whose
# definitions follow FACS (Apple's ARFaceAnchor.BlendShapeLocation docs describe each movement).
AU_BLENDSHAPES: dict[int, tuple[str, tuple[str, ...], str]] = {
    1: ("inner brow raiser", ("browInnerUp",), "the inner brow ends raised"),
    2: ("outer brow raiser", ("browOuterUpLeft", "browOuterUpRight"), "the outer brow ends raised"),
    4: ("brow lowerer", ("browDownLeft", "browDownRight"), "the brows lowered (and drawn together)"),
    5: ("upper lid raiser", ("eyeWideLeft", "eyeWideRight"), "the eyes widened by the upper lid"),
    6: ("cheek raiser", ("cheekSquintLeft", "cheekSquintRight"), "the cheeks raised around the lower lids"),
    7: ("lid tightener", ("eyeSquintLeft", "eyeSquintRight"), "the lids tightened, a squint"),
    9: ("nose wrinkler", ("noseSneerLeft", "noseSneerRight"), "the nose wings and upper lip raised"),
    12: ("lip corner puller", ("mouthSmileLeft", "mouthSmileRight"), "the lip corners pulled up and out"),
    15: ("lip corner depressor", ("mouthFrownLeft", "mouthFrownRight"), "the lip corners pulled down"),
    16: ("lower lip depressor", ("mouthLowerDownLeft", "mouthLowerDownRight"), "the lower lip pulled down"),
    20: ("lip stretcher", ("mouthStretchLeft", "mouthStretchRight"), "the lip corners pulled sideways"),
    23: ("lip tightener", ("mouthPressLeft", "mouthPressRight"),
         "ARKit has no lip tightener; mouthPress (the lips pressed together, AU24) is the nearest and the "
         "two come together in anger; mouthRoll* (lips rolled in, AU28) names another movement"),
    26: ("jaw drop", ("jawOpen",), "the jaw lowered"),
}

AUS: tuple[int, ...] = tuple(sorted(AU_BLENDSHAPES))  # columns of au_intensities
_INDEX = {name: i for i, name in enumerate(BLENDSHAPES)}
# (len(AUS), 52): row a averages the blendshapes read for AU AUS[a]
_READ = np.zeros((len(AUS), len(BLENDSHAPES)), np.float64)
for _a, _au in enumerate(AUS):
    for _name in AU_BLENDSHAPES[_au][1]:
        _READ[_a, _INDEX[_name]] = 1 / len(AU_BLENDSHAPES[_au][1])
# (6, len(AUS)) in CLASSES order: row k averages the AUs of emotion CLASSES[k]'s prototype
_COMBINE = np.zeros((len(CLASSES), len(AUS)), np.float64)
for _k, _c in enumerate(CLASSES):
    for _au in PROTOTYPES[_c]:
        _COMBINE[_k, AUS.index(_au)] = 1 / len(PROTOTYPES[_c])


def _blendshapes(blendshapes) -> np.ndarray:
    b = np.asarray(blendshapes, np.float64)
    if b.ndim == 1:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != len(BLENDSHAPES):
        raise ValueError(f"blendshapes must be (N, {len(BLENDSHAPES)}) in the order of "
                         f"byel.faces.mesher.BLENDSHAPES, got shape {np.shape(blendshapes)}")
    return b


def au_intensities(blendshapes) -> np.ndarray:
    """(N, len(AUS)) intensities in [0, 1] of the AUs in AUS, read from blendshapes (N, 52) (or
    one face's (52,)) by AU_BLENDSHAPES; NaN rows where the blendshapes are NaN (no mesh)."""
    return _blendshapes(blendshapes) @ _READ.T


def rest_level(blendshapes) -> np.ndarray:
    """(len(AUS),) the median AU intensities of faces showing no action unit (e.g. `byel generate`'s
    neutral faces), over those with a mesh: the ``rest`` of the functions below."""
    au = au_intensities(blendshapes)
    au = au[np.isfinite(au).all(1)]
    if not len(au):
        raise ValueError("no face with a mesh to measure the rest level on")
    return np.median(au, 0)


def prototype_scores(blendshapes, rest=None) -> np.ndarray:
    """(N, 6) scores in [0, 1] of the six emotions in byel.classes.CLASSES order: the mean of each
    EMFACS prototype's AU intensities (less ``rest``, clipped at 0, when given); NaN rows where no
    mesh was found."""
    au = au_intensities(blendshapes)
    if rest is not None:
        au = np.maximum(au - np.asarray(rest, np.float64), 0, where=np.isfinite(au), out=au)
    return au @ _COMBINE.T


def probabilities(blendshapes, rest=None) -> np.ndarray:
    """(N, 6) prototype scores normalised to sum to 1 (CLASSES order); a face without a mesh (or
    with every score 0) gets chance, 1/6 each."""
    s = prototype_scores(blendshapes, rest)
    total = s.sum(1, keepdims=True)
    ok = np.isfinite(total) & (total > 0)
    return np.where(ok, s / np.where(ok, total, 1), 1 / len(CLASSES))


def predict(blendshapes, rest=None) -> np.ndarray:
    """(N,) int64: index in CLASSES of the best-scoring prototype; -1 where no mesh was found."""
    s = prototype_scores(blendshapes, rest)
    found = np.isfinite(s).all(1)
    return np.where(found, np.nan_to_num(s, nan=-1.0).argmax(1), -1).astype(np.int64)


def mapping_table() -> list[dict]:
    """The AU <-> blendshape mapping as rows (AU, FACS name, blendshapes, why, the emotions
    whose prototype holds it), for documentation and the benchmark's results."""
    return [{"au": au, "name": name, "blendshapes": list(shapes), "why": why,
             "in": [c for c in CLASSES if au in PROTOTYPES[c]]}
            for au, (name, shapes, why) in sorted(AU_BLENDSHAPES.items())]

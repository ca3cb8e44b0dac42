"""Synthetic labelled expression faces: the FACS AU model, two renderers and `generate`.

- `procedural`: a parametric face renderer driven by action units (numpy + OpenCV only).
- `warp`: expressions made by warping real neutral faces (optional extra `byel[warp]`).
- `mesh`: expressions made by driving the 478-point face mesh of real neutral faces (byel.faces).

Import the heavy parts from their modules (`byel.synth.generate`, `byel.synth.procedural`);
this package only names them, so importing it stays cheap.
"""

from byel.choices import BACKENDS, FROM_REAL  # noqa: F401  (the names live with every other choice)

"""Synthetic labelled expression faces: the FACS AU model, two renderers and `generate`.

- `procedural`: a parametric face renderer driven by action units (numpy + OpenCV only).
- `warp`: expressions made by warping real neutral faces (optional extra `byel[warp]`).
- `mesh`: expressions made by driving the 478-point face mesh of real neutral faces (byel.faces).

Import the parts from their modules (`byel.synth.generate`, `byel.synth.procedural`); the backend
names live with every other choice a user makes, in `byel.choices` (BACKENDS, FROM_REAL).
"""


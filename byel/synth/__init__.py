"""Synthetic labelled expression faces: the FACS AU model, two renderers and `generate`.

- `procedural`: a parametric face renderer driven by action units (numpy + OpenCV only).
- `warp`: expressions made by warping real neutral faces (optional extra `byel[warp]`).
- `mesh`: expressions made by driving the 478-point face mesh of real neutral faces (byel.faces).

Import the heavy parts from their modules (`byel.synth.generate`, `byel.synth.procedural`);
this package only names them, so importing it stays cheap.
"""

BACKENDS = ("procedural", "warp", "mesh")
FROM_REAL = ("warp", "mesh")  # backends whose images are made of real source faces (tier C)

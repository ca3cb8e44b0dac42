"""Face geometry with Google's MediaPipe Face Landmarker v2 (vendored, Apache-2.0), run by the
TFLite runtime: find faces, measure 478 landmarks and 52 blendshapes, turn them into features.

    from byel.faces import FaceMesher, measure_images, geometry_features
    faces = FaceMesher().measure(rgb)             # any photo -> list[Face], [] when none
    faces = FaceMesher().find(photo)              # small faces too: the photo and tiles of it (byel predict)
    meshes = measure_images(crops, workers=2)     # N face crops -> one mesh (or none) each, cached
    feats, found = geometry_features(meshes)      # (N, 1008) blendshapes + eye-aligned landmarks
    head = fit_geometry_head(feats, labels)       # a torch module: features -> 6 class logits
    byel.faces.rules.predict(meshes.blendshapes)  # no learning: the six EMFACS prototypes' rules

Results that use it are "with a pretrained face-geometry model": Google trained it on real faces
(for geometry; it knows no expression class).
"""

from byel.faces.batch import Meshes, frame_crop, measure_images
from byel.faces.features import N_FEATURES, align_landmarks, aligned_crop, geometry_features
from byel.faces.head import GeometryHead, fit_geometry_head
from byel.faces.mesher import BLENDSHAPES, EYE_CORNERS, Face, FaceMesher

__all__ = ["BLENDSHAPES", "EYE_CORNERS", "N_FEATURES", "Face", "FaceMesher", "GeometryHead", "Meshes",
           "align_landmarks", "aligned_crop", "fit_geometry_head", "frame_crop", "geometry_features",
           "measure_images"]

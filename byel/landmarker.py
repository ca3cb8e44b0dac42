"""The vendored face landmarker's identity: the SHA-256 digest of the MediaPipe Face Landmarker v2
bundle that byel ships (byel/assets/face_landmarker/face_landmarker.task).

byel.faces.model refuses a bundle with any other digest; records that name the face-geometry model
a number came from (checkpoint metadata, export files, fusion and co-training records) quote it.
It lives on the ground floor, importing nothing, so a record can name the model without importing
the face package above it.
"""

SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
LANDMARKER = "MediaPipe Face Landmarker v2 (face_landmarker.task)"  # its name in reports

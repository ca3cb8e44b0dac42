"""File extensions and names shared by the loader, the generator, prediction and submission."""

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_EXTS = frozenset({".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})

# What `byel generate` writes next to the class folders of its output: not training images.
MANIFEST = "manifest.csv"
PREVIEW = "preview.png"
# ... and its provenance: backend, seed, size, and the warp backend's real source faces (tier C)
GENERATE_INFO = "generate.json"

"""File extensions and names shared by the loader, the generator, prediction and submission."""

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})

# What `byel generate` writes next to the class folders of its output: not training images.
MANIFEST = "manifest.csv"
PREVIEW = "preview.png"

"""byel — Bootstrap Your Emotion Latent: facial-expression recognition learned from synthetic faces."""

__version__ = "0.1.0"

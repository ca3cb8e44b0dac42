"""Backbones (a small registry with one `create_backbone` entry point) and heads."""

from byel.models.backbones import BACKBONES, check_backbone, create_backbone, register_backbone
from byel.models.heads import MLP, EmotionClassifier

__all__ = ["BACKBONES", "check_backbone", "create_backbone", "register_backbone", "MLP", "EmotionClassifier"]

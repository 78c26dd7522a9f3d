"""Synthetic demo data (not FER2013): drawn faces for the demo environment and the tests."""

from .dataset import generate_demo_dataset, write_demo_clip, write_demo_photos
from .faces import draw_face, draw_photo

__all__ = ["draw_face", "draw_photo", "generate_demo_dataset", "write_demo_clip", "write_demo_photos"]

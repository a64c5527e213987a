"""emoclip: multimodal emotion recognition with CLIP, on Lightning and Hydra."""

__version__ = "0.1.0"

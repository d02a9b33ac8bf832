"""Text conditioning: T5 / CLIP wrappers over ``transformers`` (local directories only) and tiny test encoders."""
from .encoders import CLIPTextEncoder, T5TextEncoder, TextEncoders
from .tiny import make_tiny_clip, make_tiny_encoders, make_tiny_t5

__all__ = ["CLIPTextEncoder", "T5TextEncoder", "TextEncoders", "make_tiny_clip", "make_tiny_encoders", "make_tiny_t5"]

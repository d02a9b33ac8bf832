"""Flow-matching Euler sampler, classifier-free guidance with rescale, prompt templates and caption cleaning."""
from .guidance import guided_velocity
from .prompts import NEGATIVE_TEMPLATE, POSITIVE_TEMPLATE, clean_caption, negative_prompt, positive_prompt
from .sampler import TextConditioning, initial_noise, sample
from .schedule import shifted_sigmas

__all__ = [
    "NEGATIVE_TEMPLATE", "POSITIVE_TEMPLATE", "TextConditioning", "clean_caption", "guided_velocity",
    "initial_noise", "negative_prompt", "positive_prompt", "sample", "shifted_sigmas",
]

"""Text-to-video: the pipeline, the flow-matching Euler sampler, classifier-free guidance with rescale, the prompt
templates and caption cleaning."""
from .guidance import guided_velocity
from .pipeline import Pipeline, demo_pipeline, load_pipeline
from .prompts import NEGATIVE_TEMPLATE, POSITIVE_TEMPLATE, clean_caption, negative_prompt, positive_prompt
from .sampler import TextConditioning, initial_noise, sample
from .schedule import shifted_sigmas

__all__ = [
    "NEGATIVE_TEMPLATE", "POSITIVE_TEMPLATE", "Pipeline", "TextConditioning", "clean_caption", "demo_pipeline",
    "guided_velocity", "initial_noise", "load_pipeline", "negative_prompt", "positive_prompt", "sample",
    "shifted_sigmas",
]

"""Prompt templates of Open-Sora Plan v1.5 and the caption cleaning applied to both prompts.

The reference runs a PixArt/DeepFloyd-style ``clean_caption`` twice; ``clean_caption`` here implements its
normalisation steps that matter for ordinary prompts (see its docstring). Cleaning twice is idempotent.
"""
from __future__ import annotations

import html
import re
import urllib.parse

POSITIVE_TEMPLATE = "high quality, {}"
NEGATIVE_TEMPLATE = (
    "Worst quality, Normal quality, Low quality, Low res, Blurry, Jpeg artifacts, Grainy, watermark, banner, "
    "Cropped, Out of frame, Out of focus, Bad anatomy, Bad proportions, Deformed, Disconnected limbs, Disfigured, "
    "username, error, sketch, duplicate, ugly, monochrome, horror, geometry, mutation, disgusting, overexposed, "
    "underexposed."
)

_URL = re.compile(r"\b((?:https?:|www\.)\S+)", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
_MENTION = re.compile(r"@[\w\d]+\b")
_DASHES = re.compile(r"[\u2010-\u2015\u2212]")
_QUOTES = re.compile(r"[`´«»“”¨‘’]")
_SPACES = re.compile(r"\s+")


def clean_caption(text: str) -> str:
    """URL-unquote, lower-case, drop URLs, HTML tags/entities and @mentions, unify dashes and quotes, collapse
    whitespace, strip. (Not implemented from the reference: ftfy text fixing, CJK and boilerplate removal.)"""
    if not isinstance(text, str):
        raise TypeError(f"prompt must be a str, got {type(text).__name__}")
    text = urllib.parse.unquote_plus(text.strip()).lower()
    text = _URL.sub("", text)
    text = _TAG.sub("", html.unescape(text))
    text = _MENTION.sub("", text)
    text = _QUOTES.sub('"', _DASHES.sub("-", text))
    return _SPACES.sub(" ", text).strip()


def positive_prompt(prompt: str) -> str:
    """The cleaned ``"high quality, {prompt}"``."""
    return clean_caption(clean_caption(POSITIVE_TEMPLATE.format(prompt)))


def negative_prompt(extra: str = "") -> str:
    """The cleaned fixed negative template, with the user's negative prompt appended (if any)."""
    text = NEGATIVE_TEMPLATE + (f" {extra}" if extra else "")
    return clean_caption(clean_caption(text))

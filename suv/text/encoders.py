"""T5 v1.1 XL and CLIP ViT-bigG text encoders through ``transformers``, loaded only from local directories.

``T5TextEncoder`` returns the last hidden state (padded to 512 tokens) and the attention mask;
``CLIPTextEncoder`` returns the projected pooled embedding (``text_embeds``, 77 tokens, no attention mask passed),
as the reference pipeline does.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

PathLike = str | os.PathLike


def _local_dir(path: PathLike, what: str) -> str:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{what} directory {path} has no config.json (expected a local transformers "
                                f"save_pretrained directory; nothing is downloaded)")  # fmt: skip
    return str(path)


def _prompts(prompts: str | list[str]) -> list[str]:
    prompts = [prompts] if isinstance(prompts, str) else prompts
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise TypeError(f"prompts must be a str or a non-empty list of str, got {prompts!r}")
    return prompts


class T5TextEncoder:
    """``encode(prompts) -> (hidden (B, 1, max_length, d_model), mask (B, 1, max_length))``."""

    def __init__(self, path: PathLike, max_length: int = 512, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:  # fmt: skip
        from transformers import AutoTokenizer, T5EncoderModel

        path = _local_dir(path, "T5")
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = T5EncoderModel.from_pretrained(path, local_files_only=True, torch_dtype=dtype).to(device).eval()
        self.max_length, self.device = max_length, torch.device(device)

    @torch.no_grad()
    def encode(self, prompts: str | list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.tokenizer(_prompts(prompts), max_length=self.max_length, padding="max_length", truncation=True,
                             return_tensors="pt")  # fmt: skip
        ids, mask = tok.input_ids.to(self.device), tok.attention_mask.to(self.device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return hidden.unsqueeze(1), mask.unsqueeze(1)


class CLIPTextEncoder:
    """``encode(prompts) -> pooled (B, 1, projection_dim)`` (``CLIPTextModelWithProjection.text_embeds``)."""

    def __init__(self, path: PathLike, max_length: int = 77, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:  # fmt: skip
        from transformers import AutoTokenizer, CLIPTextModelWithProjection

        path = _local_dir(path, "CLIP")
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = CLIPTextModelWithProjection.from_pretrained(path, local_files_only=True, torch_dtype=dtype)
        self.model = self.model.to(device).eval()
        self.max_length, self.device = max_length, torch.device(device)

    @torch.no_grad()
    def encode(self, prompts: str | list[str]) -> torch.Tensor:
        tok = self.tokenizer(_prompts(prompts), max_length=self.max_length, padding="max_length", truncation=True,
                             return_tensors="pt")  # fmt: skip
        return self.model(input_ids=tok.input_ids.to(self.device)).text_embeds.unsqueeze(1)


class TextEncoders:
    """T5 and CLIP together: the two text conditions of the SUV denoiser, for sampling and for training alike."""

    def __init__(self, t5: T5TextEncoder, clip: CLIPTextEncoder) -> None:
        self.t5, self.clip = t5, clip

    @classmethod
    def load(cls, t5: PathLike, clip: PathLike, max_length: int = 512, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32) -> TextEncoders:  # fmt: skip
        """Both encoders from local directories (``max_length``: T5 tokens)."""
        return cls(T5TextEncoder(t5, max_length, device, dtype), CLIPTextEncoder(clip, device=device, dtype=dtype))

    @torch.no_grad()
    def encode(self, prompts: str | list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(T5 hidden (B, 1, L, D), T5 mask (B, 1, L), CLIP pooled (B, 1, P))`` of the prompts."""
        hidden, mask = self.t5.encode(prompts)
        return hidden, mask, self.clip.encode(prompts)

"""Small random-weight T5 / CLIP encoders of the real classes, saved like real checkpoints (tests and ``--demo``).

The tokenizer is a character-level ``PreTrainedTokenizerFast`` built offline (lower-case ASCII), so nothing is
downloaded; the directories load through ``T5TextEncoder`` / ``CLIPTextEncoder`` exactly like released weights.
"""
from __future__ import annotations

import os
import string
from pathlib import Path

import torch

PathLike = str | os.PathLike
_SPECIALS = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2: T5's pad/eos/unk ids


def _char_tokenizer():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set(string.ascii_lowercase + string.digits + string.punctuation + " "))
    vocab = {tok: i for i, tok in enumerate(_SPECIALS + chars)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"), len(vocab)


def make_tiny_t5(path: PathLike, d_model: int = 24, seed: int = 0) -> Path:
    """Write a random 2-layer ``T5EncoderModel`` (hidden ``d_model``) and its tokenizer to ``path``."""
    from transformers import T5Config, T5EncoderModel

    tokenizer, vocab = _char_tokenizer()
    torch.manual_seed(seed)
    config = T5Config(vocab_size=vocab, d_model=d_model, d_kv=8, d_ff=2 * d_model, num_layers=2, num_heads=2,
                      feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1)  # fmt: skip
    T5EncoderModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return Path(path)


def make_tiny_clip(path: PathLike, projection_dim: int = 16, seed: int = 0) -> Path:
    """Write a random 2-layer ``CLIPTextModelWithProjection`` (``text_embeds`` of width ``projection_dim``)."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    tokenizer, vocab = _char_tokenizer()
    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=77, projection_dim=projection_dim,
                            pad_token_id=0, bos_token_id=1, eos_token_id=1)  # fmt: skip
    CLIPTextModelWithProjection(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return Path(path)


def make_tiny_encoders(workdir: PathLike, caption_channels: int, pooled_dim: int, seed: int = 0, write: bool = True
                       ) -> tuple[Path, Path]:  # fmt: skip
    """The directories ``workdir/tiny_t5`` and ``workdir/tiny_clip`` of tiny random encoders whose widths fit a
    SUV config (T5 hidden = ``caption_channels``, CLIP pooled = ``pooled_dim``); ``write=False`` only names them
    (e.g. on the ranks that wait while rank 0 writes)."""
    t5, clip = Path(workdir) / "tiny_t5", Path(workdir) / "tiny_clip"
    if write:
        make_tiny_t5(t5, d_model=caption_channels, seed=seed)
        make_tiny_clip(clip, projection_dim=pooled_dim, seed=seed)
    return t5, clip

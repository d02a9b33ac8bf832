"""The latent cache (the v1.5 report's feature caching): WF-VAE latents and text embeddings computed once.

``suv-cache --config C.yaml --output DIR`` writes ``DIR/shard_<n>.safetensors`` (latents ``latent/<clip>``, T5 and
CLIP embeddings ``t5/<clip>/<caption>``, ``mask/...``, ``clip/...``), ``DIR/empty.safetensors`` (the empty
caption's embeddings) and, last, ``DIR/index.json`` with the SHA-256 of every file and the fingerprint of what
produced them (index, VAE, encoders, frames, size, fps). Training with ``cache: DIR`` (``CachedClips``) refuses a cache whose
fingerprint differs from its config (stale) or whose files do not match their checksums (corrupt), naming which.
Every file is written to a temporary name and renamed; an interrupted build leaves no index, so no cache.
Clips that cannot be used (missing, undecodable, too short) are left out with a logged reason and listed under
``skipped``; cached clips are numbered densely, so ``shapes`` (hence the bucket sampler) only holds clips that exist.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..io import write_atomic, writing
from .data import read_index
from .sources import OnlineClips, load_encoders, pick_captions

log = logging.getLogger(__name__)
FORMAT = 1
_FINGERPRINT_FIELDS = ("vae", "t5", "clip", "t5_max_length", "num_frames", "height", "width", "max_hxw", "min_hxw",
                       "hw_stride", "train_fps", "seed")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _clip_files(annotation: str | Path) -> str:
    """SHA-256 of every clip file's path (relative to the annotation file, so the dataset may move), size and
    modification time: a replaced video changes it."""
    h, folder = hashlib.sha256(), Path(annotation).parent
    for record in read_index(annotation):
        name = record.path.relative_to(folder) if record.path.is_relative_to(folder) else record.path
        try:
            st = record.path.stat()
            h.update(f"{name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{name}|missing\n".encode())
    return h.hexdigest()


def fingerprint(cfg) -> dict:
    """What the cached tensors depend on: the annotation file's content, its clip files (path, size, modification
    time) and the encoding settings (with the seed, which sets the weights of a random ``vae: tiny``)."""
    fp = {name: getattr(cfg, name) for name in _FINGERPRINT_FIELDS}
    fp["data_sha256"] = _sha256(Path(cfg.data))
    fp["clip_files"] = _clip_files(cfg.data)
    if Path(cfg.vae).is_file():
        fp["vae_sha256"] = _sha256(Path(cfg.vae))
    return fp


def _save(tensors: dict, path: Path) -> dict:
    with writing(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    return {"file": path.name, "sha256": _sha256(path)}


@torch.no_grad()
def build_cache(cfg, out: str | Path, shard_clips: int = 64) -> Path:
    """Encode every clip of ``cfg.data`` (one window each) and its captions; returns the index path."""
    out = Path(out)
    (out / "index.json").unlink(missing_ok=True)  # a rebuild stopped midway must leave no cache, not a stale one
    source = OnlineClips(cfg, *load_encoders(cfg, out))
    text = source.caption
    rng = random.Random(cfg.seed)
    shards, tensors, clips, skipped, caption_counts, shapes = [], {}, 0, [], [], []
    for i, record in enumerate(source.records):
        latent = source.encode_clip(i, rng)
        if latent is None:  # why is logged by encode_clip
            skipped.append({"path": str(record.path), "reason": source.bad[i]})
            continue
        tensors[f"latent/{clips}"] = latent
        for c, caption in enumerate(record.captions):
            hidden, mask, pooled = text(caption)
            tensors.update({f"t5/{clips}/{c}": hidden, f"mask/{clips}/{c}": mask, f"clip/{clips}/{c}": pooled})
        caption_counts.append(len(record.captions))
        shapes.append(source.shapes[i])
        clips += 1
        if clips % shard_clips == 0:
            shards.append(_save(tensors, out / f"shard_{len(shards):05d}.safetensors"))
            tensors = {}
    if tensors:
        shards.append(_save(tensors, out / f"shard_{len(shards):05d}.safetensors"))
    if not clips:
        raise ValueError(f"{cfg.data}: no usable clip (none gives {cfg.num_frames} frames at {cfg.train_fps} fps, "
                         "or every file is missing or unreadable)")
    hidden, mask, pooled = text("")
    empty = _save({"t5": hidden, "mask": mask, "clip": pooled}, out / "empty.safetensors")
    index = {"format": FORMAT, "fingerprint": fingerprint(cfg), "clips": clips, "captions": caption_counts,
             "shapes": shapes, "shards": shards, "empty": empty, "skipped": skipped}
    write_atomic(out / "index.json", json.dumps(index, indent=1))
    if skipped:
        log.warning("latent cache %s: left out %d of %d clips (listed under 'skipped' in index.json)", out,
                    len(skipped), len(source.records))
    return out / "index.json"


def read_cache(folder: str | Path, cfg):
    """``(latents, captions, empty, shapes)`` of a cache built for ``cfg``; ValueError if missing, stale or corrupt."""
    folder = Path(folder)
    try:
        index = json.loads((folder / "index.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"no usable latent cache at {folder} ({e}); build it with `suv-cache`") from e
    if index.get("format") != FORMAT:
        raise ValueError(f"latent cache {folder}: format {index.get('format')}, this version reads {FORMAT}")
    have = index.get("fingerprint")
    if not isinstance(have, dict):
        raise ValueError(f"latent cache {folder}: index.json has no fingerprint (not written by suv-cache, or "
                         "edited); rebuild it with `suv-cache`")  # fmt: skip
    want = fingerprint(cfg)
    stale = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
    if stale:
        raise ValueError(f"stale latent cache {folder}: built with different {', '.join(stale)} than the config "
                         "asks for; rebuild it with `suv-cache`")
    tensors = {}
    for entry in index["shards"]:
        tensors.update(_load_verified(folder, entry))
    empty = _load_verified(folder, index["empty"])
    latents = [tensors[f"latent/{i}"] for i in range(index["clips"])]
    captions = [[(tensors[f"t5/{i}/{c}"], tensors[f"mask/{i}/{c}"], tensors[f"clip/{i}/{c}"]) for c in range(n)]
                for i, n in enumerate(index["captions"])]
    return latents, captions, (empty["t5"], empty["mask"], empty["clip"]), index["shapes"]


def _load_verified(folder: Path, entry: dict) -> dict:
    path = folder / entry["file"]
    if not path.is_file() or _sha256(path) != entry["sha256"]:
        raise ValueError(f"corrupt latent cache {folder}: {entry['file']} is missing or fails its checksum; "
                         "rebuild it with `suv-cache`")
    return load_file(str(path))


class CachedClips:
    """The latent cache (``suv-cache``), checked against the config and its checksums, held in memory."""

    def __init__(self, cfg):
        self.latents, self.captions, self.empty, self.shapes = read_cache(cfg.cache, cfg)

    def batch(self, indices: list[int], drop: float, g: torch.Generator, keep: slice = slice(None)):
        picks = pick_captions(indices, lambda i: len(self.captions[i]), drop, g)[keep]
        rows = [(self.latents[i], *(self.empty if c is None else self.captions[i][c])) for i, c in picks]
        return tuple(torch.stack(t) for t in zip(*rows))

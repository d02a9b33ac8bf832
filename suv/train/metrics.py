"""What a training step reports besides its loss: memory (host and device, named as such) and the loss plot."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from skiparse.host import atomic_path, peak_rss_mib


def memory_row(device: torch.device) -> dict[str, float]:
    """``host_peak_rss_mib``: this process's peak resident host memory (RSS) so far, which on a CPU run is the
    training memory; on a CUDA device also ``device_peak_allocated_mib``, the peak of tensors allocated there."""
    row = {"host_peak_rss_mib": peak_rss_mib()}
    if device.type == "cuda":
        row["device_peak_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def plot_losses(metrics: Path, out: Path) -> bool:
    """Loss per step from the JSONL log to a PNG (atomically); False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return True

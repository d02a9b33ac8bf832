"""The tiny training setup the training tests share: a toy dataset of 9-frame 32x32 clips and its config."""
from suv.train.trainer import TrainConfig


def toy_config(index, **overrides) -> TrainConfig:
    """TrainConfig of a tiny run on the toy dataset ``index`` (batch 2, 9x32x32, T5 length 8); ``overrides`` win."""
    base = dict(data=str(index), t5_max_length=8, num_frames=9, height=32, width=32, batch_size=2, lr=3e-4,
                save_every=1000, bucket_min_factor=1)
    return TrainConfig.from_dict({**base, **overrides})

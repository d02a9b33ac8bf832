"""Min-Max token sizes (the spec's worked example) and the one-shape-per-batch bucket sampler."""
import pytest

from suv.train.buckets import BucketSampler, min_max_target


@pytest.mark.parametrize("hw,target", [
    ((1080, 1080), (256, 256)), ((720, 960), (192, 256)), ((960, 720), (256, 192)),
    ((720, 1280), (144, 256)), ((1280, 720), (256, 144)), ((700, 1300), (144, 256)),
])
def test_min_max_tokens_five_ratios(hw, target):
    assert min_max_target(*hw, max_hxw=65_536, min_hxw=0, stride=16) == target


def test_small_clips_are_dropped():
    assert min_max_target(100, 100, max_hxw=65_536, min_hxw=36_864) is None


def test_sampler_batches_have_one_shape_cover_each_clip_once_and_are_step_addressable():
    shapes = ["9x256x256"] * 17 + ["9x192x256"] * 9 + ["9x144x256"] * 3 + [None] * 2
    sampler = BucketSampler(shapes, batch_size=2, world=1, seed=3, min_bucket_factor=4)
    assert sampler.dropped == ["9x144x256"]  # 3 clips < 4 x 2
    assert sampler.steps_per_epoch == 17 // 2 + 9 // 2
    epoch = [sampler.batch(s) for s in range(sampler.steps_per_epoch)]
    assert all(len({shapes[i] for i in b}) == 1 and len(b) == 2 for b in epoch)
    flat = [i for b in epoch for i in b]
    assert len(flat) == len(set(flat))
    fresh = BucketSampler(shapes, batch_size=2, world=1, seed=3)  # resume: any step without replaying
    assert fresh.batch(sampler.steps_per_epoch + 5) == sampler.batch(sampler.steps_per_epoch + 5)
    assert [sampler.batch(s) for s in range(sampler.steps_per_epoch, 2 * sampler.steps_per_epoch)] != epoch


def test_too_little_data_is_refused():
    with pytest.raises(ValueError, match="no bucket holds 4 x 8 clips"):
        BucketSampler(["9x64x64"] * 10, batch_size=4, world=2)

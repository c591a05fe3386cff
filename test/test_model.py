"""The network: fused vs explicit attention, official maths details, input checks, cost."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import randomise_
from timesformer_ros.model import (
    ATTENTION_TYPES, PRESETS, DividedBlock, TimeSformer, TimeSformerConfig, attention_flops,
    count_parameters, preset)

TINY = TimeSformerConfig(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2,
                         num_heads=4, num_classes=5)


@pytest.mark.parametrize('attention_type', ATTENTION_TYPES)
def test_fused_and_explicit_attention_agree(attention_type):
    model = randomise_(TimeSformer(TINY.replace(attention_type=attention_type))).eval()
    video = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        fused = model(video)
        explicit, weights = model.forward_with_attention(video, blocks={0, 1})
    assert fused.shape == (2, 5)
    torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=1e-5)
    assert set(weights) == {0, 1}
    spatial = weights[1].spatial
    # Rows are softmax distributions.
    torch.testing.assert_close(spatial.sum(-1), torch.ones_like(spatial.sum(-1)))
    if attention_type == 'divided_space_time':
        assert spatial.shape == (2 * 4, 4, 1 + 16, 1 + 16)
        assert weights[1].temporal.shape == (2 * 16, 4, 4, 4)
    elif attention_type == 'joint_space_time':
        assert spatial.shape == (2, 4, 1 + 4 * 16, 1 + 4 * 16)
        assert weights[1].temporal is None
    else:
        assert spatial.shape == (2 * 4, 4, 1 + 16, 1 + 16)


def test_temporal_fc_is_zero_in_every_block_of_a_fresh_model():
    model = TimeSformer(TINY.replace(depth=3))
    blocks = [blk for blk in model.blocks if isinstance(blk, DividedBlock)]
    assert len(blocks) == 3
    for blk in blocks:
        assert torch.count_nonzero(blk.temporal_fc.weight) == 0
        assert torch.count_nonzero(blk.temporal_fc.bias) == 0
    assert torch.count_nonzero(model.time_embed) == 0
    # ...and every other linear layer is initialised (not zero).
    assert torch.count_nonzero(model.blocks[0].temporal_attn.qkv.weight) > 0


def test_fresh_divided_model_ignores_frame_order_through_its_temporal_branch():
    """With temporal_fc zero and no time embedding signal, a fresh model is a per-frame ViT
    averaged over frames: shuffling the frames cannot change the logits."""
    model = TimeSformer(TINY).eval()
    video = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(video), model(video[:, [2, 0, 3, 1]]), atol=1e-5,
                                   rtol=1e-5)


def test_frame_order_matters_once_temporal_parts_are_trained():
    model = randomise_(TimeSformer(TINY)).eval()
    video = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        assert (model(video) - model(video.flip(1))).abs().max() > 1e-4


def test_cls_token_is_the_first_token_and_excluded_from_temporal_attention():
    model = randomise_(TimeSformer(TINY)).eval()
    video = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        _, weights = model.forward_with_attention(video, blocks={0})
    # Temporal attention runs over the 16 patch positions only: B*N sequences of length T.
    assert weights[0].temporal.shape[0] == 16
    # Spatial attention runs once per frame with the CLS token prepended: 1 + N tokens.
    assert weights[0].spatial.shape[-1] == 17


@pytest.mark.parametrize('attention_type', ATTENTION_TYPES)
def test_batch_rows_are_independent(attention_type):
    model = randomise_(TimeSformer(TINY.replace(attention_type=attention_type))).eval()
    video = torch.randn(3, 4, 3, 32, 32)
    with torch.no_grad():
        batched = model(video)
        single = torch.cat([model(video[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_different_t_and_resolution_resize_embeddings():
    model = randomise_(TimeSformer(TINY)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 6, 3, 48, 40)).shape == (1, 5)
        assert model(torch.randn(1, 2, 3, 32, 32)).shape == (1, 5)


@pytest.mark.parametrize('shape, message', [
    ((4, 3, 32, 32), '4 dimensions'),
    ((1, 4, 1, 32, 32), '1 channels'),
    ((1, 4, 3, 30, 32), 'height 30'),
    ((1, 4, 3, 32, 4), 'width 4'),
])
def test_bad_video_shapes_raise_naming_the_problem(shape, message):
    model = TimeSformer(TINY)
    with pytest.raises(ValueError, match=message):
        model(torch.randn(*shape))


def test_t_above_the_time_embedding_raises_when_resizing_is_disabled():
    model = TimeSformer(TINY.replace(resize_embeddings=False))
    with pytest.raises(ValueError, match='T=5 frames but the time embedding holds 4'):
        model(torch.randn(1, 5, 3, 32, 32))
    with pytest.raises(ValueError, match='48x48.*resize_embeddings is disabled'):
        model(torch.randn(1, 4, 3, 48, 48))
    assert model(torch.randn(1, 4, 3, 32, 32)).shape == (1, 5)


@pytest.mark.parametrize('changes, message', [
    (dict(attention_type='space_time'), 'attention_type must be one of'),
    (dict(img_size=30), 'img_size 30 is not a multiple of patch_size 8'),
    (dict(num_heads=5), 'embed_dim 32 is not divisible by num_heads 5'),
    (dict(depth=0), 'depth must be a positive integer, got 0'),
    (dict(mlp_ratio=0.0), 'mlp_ratio 0.0'),
])
def test_invalid_configs_raise_value_error_with_the_value(changes, message):
    with pytest.raises(ValueError, match=message):
        TINY.replace(**changes)


def test_presets():
    assert set(PRESETS) >= {'base_8x224', 'hr_16x448', 'large_96x224', 'tiny'}
    base = preset('base_8x224')
    assert (base.img_size, base.num_frames, base.embed_dim, base.depth, base.num_classes) == \
        (224, 8, 768, 12, 400)
    assert preset('hr_16x448').img_size == 448 and preset('hr_16x448').num_frames == 16
    assert preset('large_96x224').num_frames == 96
    assert preset('tiny', num_classes=3).num_classes == 3
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        preset('huge')
    with torch.device('meta'):
        # TimeSformer-Base: 121.6M parameters (../shared/ENVIRONMENT.md).
        assert round(count_parameters(TimeSformer(base)) / 1e6, 1) == 121.6


def test_tiny_preset_runs_on_cpu():
    model = TimeSformer(preset('tiny')).eval()
    cfg = model.config
    with torch.inference_mode():
        out = model(torch.randn(1, cfg.num_frames, 3, cfg.img_size, cfg.img_size))
    assert out.shape == (1, cfg.num_classes) and torch.isfinite(out).all()


def _counted_attention_flops(config: TimeSformerConfig) -> int:
    """Attention FLOPs of one clip counted by torch.utils.flop_counter on the meta device,
    where scaled_dot_product_attention runs as its two batched matrix products."""
    with torch.device('meta'):
        model = TimeSformer(config)
        video = torch.empty(1, config.num_frames, 3, config.img_size, config.img_size)
    counter = FlopCounterMode(display=False)
    with counter:
        model(video)
    counts = counter.get_flop_counts()['Global']
    return sum(v for k, v in counts.items() if 'bmm' in str(k) or 'attention' in str(k))


def test_divided_vs_joint_attention_cost_matches_the_analytic_ratio():
    base = TimeSformerConfig(img_size=224, patch_size=16, num_frames=8, embed_dim=64, depth=1,
                             num_heads=1, num_classes=2)
    t, n = 8, 196
    divided = _counted_attention_flops(base)
    joint = _counted_attention_flops(base.replace(attention_type='joint_space_time'))
    analytic = (n * t * (n + t)) / (n * t) ** 2
    assert abs((divided / joint) / analytic - 1) < 0.05
    # The exact count (with the CLS token) is what attention_flops predicts, as FLOPs = 2 MACs.
    assert divided == 2 * attention_flops(base)
    assert joint == 2 * attention_flops(base.replace(attention_type='joint_space_time'))

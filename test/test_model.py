"""The network: fused vs explicit attention, official maths details, input checks, cost."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from conftest import randomise_
from timesformer_ros.model import (
    ATTENTION_TYPES, PRESETS, DividedBlock, PatchEmbed, TimeSformer, TimeSformerConfig,
    attention_flops, count_parameters, preset)

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


def test_official_init_zeroes_every_block_that_has_a_zero_init_last():
    model = randomise_(TimeSformer(TINY.replace(depth=3)))
    model.init_weights('official')
    chosen = [m for m in model.modules() if hasattr(m, 'zero_init_last')]
    assert chosen == list(model.blocks)
    for blk in chosen:
        assert torch.count_nonzero(blk.temporal_fc.weight) == 0
        assert torch.count_nonzero(blk.temporal_fc.bias) == 0
    # Joint and space-only blocks have no temporal branch, so nothing to zero.
    joint = TimeSformer(TINY.replace(attention_type='joint_space_time'))
    assert not any(hasattr(m, 'zero_init_last') for m in joint.modules())


def test_from_scratch_init_makes_the_network_order_sensitive():
    """Compare the two initialisations' response to reversing the frames.

    The official init is nearly blind to frame order (uniform temporal attention); the
    from-scratch init is not. This is the difference between learning direction or not.
    """
    config = TINY.replace(num_classes=4)
    video = torch.randn(4, 4, 3, 32, 32)
    official = TimeSformer(config).eval()
    scratch = TimeSformer(config, weight_init='scratch').eval()

    def cls_features(model, clip):
        return model.forward_head(model.forward_features(clip), pre_logits=True)

    with torch.no_grad():
        gaps = [(cls_features(m, video) - cls_features(m, video.flip(1))).abs().max()
                for m in (official, scratch)]
    # Final-norm CLS features (unit scale): the official init responds to frame order only at
    # float rounding; the from-scratch init responds a thousand times more, which training
    # can amplify.
    assert gaps[0] < 1e-5 and gaps[1] > 1e-4 and gaps[1] > 100 * gaps[0], gaps


def test_scratch_init_changes_only_embeddings_and_the_temporal_branch():
    torch.manual_seed(3)
    official = TimeSformer(TINY).state_dict()
    torch.manual_seed(3)
    scratch = TimeSformer(TINY, weight_init='scratch').state_dict()
    changed = {key for key in official if not torch.equal(official[key], scratch[key])}
    assert changed == {'pos_embed', 'time_embed'} | {
        f'blocks.{i}.{name}' for i in range(TINY.depth)
        for name in ('temporal_attn.qkv.weight', 'temporal_fc.weight')}
    assert abs(float(scratch['pos_embed'].std()) - 1.0) < 0.1


def test_unknown_weight_init_raises_with_the_value():
    with pytest.raises(ValueError, match="got 'xavier'"):
        TimeSformer(TINY, weight_init='xavier')
    with pytest.raises(ValueError, match="got 'jax'"):
        TimeSformer(TINY).init_weights('jax')


@pytest.mark.parametrize('attention_type', ATTENTION_TYPES)
def test_forward_is_forward_head_of_forward_features(attention_type):
    model = randomise_(TimeSformer(TINY.replace(attention_type=attention_type))).eval()
    video = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        tokens = model.forward_features(video)
        # Space-only attention averages the frames' tokens, as the official code does.
        patches = 16 if attention_type == 'space_only' else 4 * 16
        assert tokens.shape == (2, 1 + patches, 32)
        torch.testing.assert_close(model.forward_head(tokens), model(video), rtol=0, atol=0)
        features = model.forward_head(tokens, pre_logits=True)
        assert features.shape == (2, 32)
        torch.testing.assert_close(model.head(features), model(video), rtol=0, atol=0)


def test_patch_embed_is_a_module_with_the_official_parameter_names():
    model = TimeSformer(TINY)
    assert isinstance(model.patch_embed, PatchEmbed)
    assert {k for k in model.state_dict() if k.startswith('patch_embed.')} == {
        'patch_embed.proj.weight', 'patch_embed.proj.bias'}
    frames = torch.randn(3, 3, 48, 40)
    assert model.patch_embed(frames).shape == (3, 6 * 5, 32)
    assert model.patch_embed.grid(48, 40) == (6, 5)


def test_reset_classifier_gives_a_fresh_head_of_the_new_size():
    model = randomise_(TimeSformer(TINY)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith('head.')}
    model.reset_classifier(3)
    assert model.config.num_classes == 3 and model.config == TINY.replace(num_classes=3)
    assert model.head.weight.shape == (3, 32) and torch.count_nonzero(model.head.bias) == 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert model(torch.randn(1, 4, 3, 32, 32)).shape == (1, 3)
    model.reset_classifier(0)
    assert isinstance(model.head, nn.Identity)
    assert model(torch.randn(1, 4, 3, 32, 32)).shape == (1, 32)


def test_resized_model_gives_the_same_logits_on_the_same_clip_at_more_pixels():
    """Give the same logits at 40 px in patches of 10 as at 32 px in patches of 8.

    On a clip constant over each patch the resampled patch embedding gives the same tokens.
    """
    model = randomise_(TimeSformer(TINY)).eval()
    torch.manual_seed(0)
    patches = torch.randn(2, 4, 3, 4, 4)
    video = patches.repeat_interleave(8, -1).repeat_interleave(8, -2)
    bigger = model.resized(40, 10).eval()
    assert bigger.config == TINY.replace(img_size=40, patch_size=10)
    assert bigger.patch_embed.proj.weight.shape == (32, 3, 10, 10)
    with torch.no_grad():
        expected = model(video)
        got = bigger(patches.repeat_interleave(10, -1).repeat_interleave(10, -2))
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    # Every other weight is the model's own; the model itself is left as it was.
    same = {'patch_embed.proj.weight'}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in bigger.state_dict().items()
               if k not in same)
    assert model.config == TINY and model.patch_embed.proj.weight.shape == (32, 3, 8, 8)


def test_resized_to_a_finer_grid_resamples_the_position_embedding():
    model = randomise_(TimeSformer(TINY)).eval()
    finer = model.resized(40, 8)                # a 5x5 grid where the model had 4x4
    assert finer.pos_embed.shape == (1, 26, 32)
    torch.testing.assert_close(finer.pos_embed[:, 0], model.pos_embed[:, 0])   # CLS kept
    assert finer(torch.randn(1, 4, 3, 40, 40)).shape == (1, 5)
    with pytest.raises(ValueError, match='img_size 36 is not a multiple of patch_size 8'):
        model.resized(36, 8)


def test_fresh_divided_model_ignores_frame_order_through_its_temporal_branch():
    """Check that a fresh model cannot tell frame orders apart.

    With temporal_fc zero and no time embedding signal, a fresh model is a per-frame ViT
    averaged over frames: shuffling the frames cannot change the logits.
    """
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
        # TimeSformer-Base with the Kinetics-400 head: 121,566,352 parameters, as many as
        # transformers' TimesformerForVideoClassification with 400 labels has (checked below).
        assert count_parameters(TimeSformer(base)) == 121_566_352


def test_base_preset_has_as_many_parameters_as_transformers_timesformer():
    transformers = pytest.importorskip('transformers')
    with torch.device('meta'):
        hf = transformers.TimesformerForVideoClassification(
            transformers.TimesformerConfig(num_labels=400))
        ours = TimeSformer(preset('base_8x224'))
    assert count_parameters(ours) == sum(p.numel() for p in hf.parameters()) == 121_566_352


def test_tiny_preset_runs_on_cpu():
    model = TimeSformer(preset('tiny')).eval()
    cfg = model.config
    with torch.inference_mode():
        out = model(torch.randn(1, cfg.num_frames, 3, cfg.img_size, cfg.img_size))
    assert out.shape == (1, cfg.num_classes) and torch.isfinite(out).all()


def _counted_attention_flops(config: TimeSformerConfig) -> int:
    """Count the attention FLOPs of one clip with torch.utils.flop_counter.

    On the meta device scaled_dot_product_attention runs as its two batched matrix products.
    """
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
    # The exact count (with the CLS token) is what attention_flops predicts.
    assert divided == attention_flops(base)
    assert joint == attention_flops(base.replace(attention_type='joint_space_time'))


@pytest.mark.parametrize('attention_type', ATTENTION_TYPES)
def test_attention_flops_are_the_flops_torch_counts(attention_type):
    """Count 2 FLOPs per multiply-accumulate, as torch's FlopCounterMode does."""
    config = TINY.replace(attention_type=attention_type)
    assert attention_flops(config) == _counted_attention_flops(config)
    t, n, d = config.num_frames, config.num_patches, config.embed_dim
    pairs = {'divided_space_time': n * t * t + t * (n + 1) ** 2,
             'joint_space_time': (n * t + 1) ** 2,
             'space_only': t * (n + 1) ** 2}[attention_type]
    macs = 2 * pairs * d * config.depth     # QK^T and AV
    assert attention_flops(config) == 2 * macs
    assert attention_flops(config, num_frames=2 * t) > attention_flops(config)

"""The engine: same logits as the plain model, attention summaries as documented."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import randomise_
from timesformer_ros.checkpoints import Checkpoint
from timesformer_ros.engine import Engine, EngineError, resolve_device, resolve_dtype
from timesformer_ros.model import ATTENTION_TYPES, TimeSformer, TimeSformerConfig

CONFIG = TimeSformerConfig(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2,
                           num_heads=4, num_classes=5)


def make_engine(attention_type='divided_space_time', **kwargs):
    model = randomise_(TimeSformer(CONFIG.replace(attention_type=attention_type))).eval()
    ckpt = Checkpoint(model=model, labels=[f'c{i}' for i in range(5)])
    return Engine(ckpt, device='cpu', **kwargs), model


@pytest.mark.parametrize('attention_type', ATTENTION_TYPES)
def test_engine_logits_equal_the_plain_model_and_summaries_are_documented(attention_type):
    engine, model = make_engine(attention_type)
    frames = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8)
              for i in range(4)]
    tensors = [engine.preprocessor(f) for f in frames]
    (pred,) = engine.infer([tensors])
    with torch.no_grad():
        reference = model(torch.stack(tensors)[None]).softmax(-1)[0].numpy()
    np.testing.assert_allclose(pred.probabilities, reference, atol=1e-6)
    order = np.argsort(-reference)     # every class, best first: the outputs keep top_k
    assert pred.class_ids == list(order) and pred.labels == [f'c{i}' for i in order]
    np.testing.assert_allclose(pred.scores, reference[order], atol=1e-6)
    assert pred.spatial.shape == (4, 4, 4) and pred.spatial_last.shape == (4, 4)
    assert np.array_equal(pred.spatial_last, pred.spatial[-1])
    assert np.isfinite(pred.spatial).all() and (pred.spatial >= 0).all()
    assert pred.temporal.shape == (4,) and np.isfinite(pred.temporal).all()
    assert abs(pred.temporal.sum() - 1) < 1e-5
    if attention_type == 'joint_space_time':
        assert pred.spatial.sum() <= 1 + 1e-5
    else:
        assert (pred.spatial.sum(axis=(1, 2)) <= 1 + 1e-5).all()
    if attention_type == 'space_only':
        np.testing.assert_allclose(pred.temporal, 0.25)
    assert pred.timings['inference_ms'] > 0


def test_divided_temporal_weights_are_the_mean_attention_each_frame_receives():
    engine, model = make_engine()
    video = torch.randn(1, 4, 3, 32, 32)
    (pred,) = engine.infer_tensor(video)
    with torch.no_grad():
        _, weights = model.forward_with_attention(video)
    temporal = weights[1].temporal  # (N, heads, T query, T key)
    np.testing.assert_allclose(pred.temporal, temporal.mean(dim=(0, 1, 2)).numpy(), atol=1e-6)
    cls_row = weights[1].spatial[:, :, 0, 1:].mean(1).reshape(4, 4, 4)
    np.testing.assert_allclose(pred.spatial, cls_row.numpy(), atol=1e-6)


def test_a_batch_of_clips_from_several_cameras_equals_one_by_one():
    engine, _ = make_engine()
    clips = [[torch.randn(3, 32, 32) for _ in range(4)] for _ in range(3)]
    batched = engine.infer(clips)
    single = [engine.infer([clip])[0] for clip in clips]
    for b, s in zip(batched, single):
        np.testing.assert_allclose(b.probabilities, s.probabilities, atol=1e-5)
        np.testing.assert_allclose(b.temporal, s.temporal, atol=1e-5)


def test_without_attention_the_fused_path_gives_the_same_probabilities():
    engine, _ = make_engine()
    video = torch.randn(2, 4, 3, 32, 32)
    fused = engine.infer_tensor(video, with_attention=False)
    explicit = engine.infer_tensor(video, with_attention=True)
    assert fused[0].spatial is None
    for f, e in zip(fused, explicit):
        np.testing.assert_allclose(f.probabilities, e.probabilities, atol=1e-5)


def test_compiled_engine_matches_eager():
    engine, _ = make_engine()
    compiled, _ = make_engine(compile=True, max_batch=1)
    compiled.model.load_state_dict(engine.model.state_dict())
    video = torch.randn(1, 4, 3, 32, 32)
    np.testing.assert_allclose(compiled.infer_tensor(video)[0].probabilities,
                               engine.infer_tensor(video)[0].probabilities, atol=1e-5)


def test_device_and_dtype_resolution():
    if torch.cuda.is_available():
        assert resolve_device('auto').type == 'cuda'
        assert resolve_dtype('auto', torch.device('cuda')) == torch.bfloat16
    else:
        assert resolve_device('auto').type == 'cpu'
        with pytest.raises(EngineError, match='no CUDA GPU is available'):
            resolve_device('cuda')
    assert resolve_dtype('auto', torch.device('cpu')) == torch.float32
    with pytest.raises(EngineError, match="unknown dtype 'float8'"):
        resolve_dtype('float8', torch.device('cpu'))
    with pytest.raises(EngineError, match="unknown device 'gpu0'"):
        resolve_device('gpu0')


def test_auto_device_and_dtype_agree_with_float32_cpu():
    """On a GPU machine this runs the bf16 CUDA path; on the CPU, float32 again."""
    engine, model = make_engine()
    auto = Engine(Checkpoint(model=model, labels=engine.labels), device='auto', dtype='auto')
    video = torch.randn(1, 4, 3, 32, 32)
    tolerance = 2e-2 if auto.dtype == torch.bfloat16 else 1e-6
    np.testing.assert_allclose(auto.infer_tensor(video)[0].probabilities,
                               engine.infer_tensor(video)[0].probabilities, atol=tolerance)


FAULTS = '''
import resource, sys, torch
from timesformer_ros.checkpoints import Checkpoint
from timesformer_ros.engine import Engine
from timesformer_ros.model import TimeSformer, preset
model = TimeSformer(preset('tiny')).eval()
if sys.argv[1] == 'engine':
    model = Engine(Checkpoint(model=model, labels=[str(i) for i in range(7)]), device='cpu').model
video = torch.randn(32, 8, 3, 32, 32)
with torch.inference_mode():
    for _ in range(3):
        model.forward_with_attention(video)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        model.forward_with_attention(video)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
'''


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc mallopt')
def test_a_cpu_engine_reuses_its_activation_memory_instead_of_faulting_it_in_each_call():
    """By default glibc returns large freed blocks to the OS; a CPU engine stops that.

    Otherwise each batch-32 inference page-faults its activations again (tens of thousands of
    faults).
    """
    def count(mode):
        result = subprocess.run([sys.executable, '-c', FAULTS, mode], capture_output=True,
                                text=True, timeout=120, check=True)
        return int(result.stdout.split()[-1])

    # Both counts vary from run to run with the allocator's state (glibc moves its mmap
    # threshold up as mmapped blocks are freed): engine 0-1015 in 12 runs measured here, plain
    # mostly 15,000-60,000 but once 3,022 in a full suite run. The fewest of three engine runs
    # is what it cannot avoid, the most of three plain ones what it does.
    faults = {'plain': max(count('plain') for _ in range(3)),
              'engine': min(count('engine') for _ in range(3))}
    assert faults['plain'] > 5000 and faults['engine'] < faults['plain'] / 20, faults

"""The shipped motion model: accuracy, order sensitivity, packaging, and a broken file."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, console_script
from timesformer_ros import synthetic
from timesformer_ros.checkpoints import load_checkpoint
from timesformer_ros.frames import Normaliser
from timesformer_ros.node import embedded_checkpoint
from timesformer_ros.train import REPORT_SEED, predict

HELD_OUT_SEED = REPORT_SEED + 999   # never drawn by training or validation


@pytest.fixture(scope='module')
def shipped():
    return load_checkpoint(embedded_checkpoint())


@pytest.fixture(scope='module')
def held_out(shipped):
    cfg = shipped.config
    return synthetic.make_dataset(HELD_OUT_SEED, 280, cfg.img_size, cfg.num_frames,
                                  synthetic.TRAIN_STYLE)


def test_the_shipped_model_is_small_and_installed_as_package_data(shipped):
    path = embedded_checkpoint()
    weights = path.with_suffix('.safetensors')
    assert path.is_file() and weights.is_file()
    assert weights.stat().st_size + path.stat().st_size <= 10 * 2 ** 20
    assert shipped.labels == list(synthetic.CLASSES)
    assert shipped.config.attention_type == 'divided_space_time'
    assert 'command' in shipped.extra['training']
    setup = (REPO / 'setup.py').read_text()
    assert "'data/*.json', 'data/*.safetensors'" in setup


# static, horizontal, vertical, scaling: the kind of motion, without its sign.
KIND = np.array([0, 1, 1, 2, 2, 3, 3])


def test_accuracy_on_held_out_clips(shipped, held_out):
    """Measured 0.60 on these clips (0.556 on the README's 2100): well above chance (1/7), far
    below the 95% target of issue 5, which stays open: the model tells static, horizontal,
    vertical and scaling motion apart, not yet their sign."""
    clips, labels = held_out
    normaliser = Normaliser(shipped.mean, shipped.std)
    predicted = predict(shipped.model, clips, normaliser)
    assert (predicted == labels).mean() >= 0.45
    assert (KIND[predicted] == KIND[labels]).mean() >= 0.85


def test_playing_clips_backwards_keeps_the_kind_of_motion(shipped, held_out):
    """Reversed clips stay horizontal, vertical or scaling. (Swapping the sign, the issue's
    reversal target, is what the shipped model does not do yet: 0.47 measured.)"""
    clips, labels = held_out
    normaliser = Normaliser(shipped.mean, shipped.std)
    backwards = predict(shipped.model, np.ascontiguousarray(clips[:, ::-1]), normaliser)
    assert (KIND[backwards] == KIND[labels]).mean() >= 0.85


@pytest.mark.parametrize('damage', ['missing', 'truncated'])
def test_a_broken_model_file_stops_the_node_naming_the_file(ros, tmp_path, damage):
    source = embedded_checkpoint()
    meta = tmp_path / source.name
    meta.write_text(source.read_text())
    weights = meta.with_suffix('.safetensors')
    if damage == 'truncated':
        weights.write_bytes(source.with_suffix('.safetensors').read_bytes()[:4096])
    result = subprocess.run(console_script('timesformer_node') + [
        '--ros-args', '-p', f'checkpoint:={meta}'], env=ros.env, capture_output=True,
        text=True, timeout=30)
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert str(weights) in output and 'Traceback' not in output


def test_demo_short_run_scores_well_above_chance(tmp_path):
    """`make demo` in a short mode: node and camera as processes over DDS, scored live."""
    import sys
    result = subprocess.run(
        [sys.executable, '-m', 'timesformer_ros.demo', '--duration', '12', '--out',
         str(tmp_path), '--domain-id', str(40 + (hash(str(tmp_path)) % 40))],
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['clean_windows'] >= 20, summary
    assert summary['accuracy'] >= 0.35, summary      # chance is 1/7; 0.58 measured over 30 s
    assert summary['node_exit_code'] == 0
    assert Path(summary['picture']).stat().st_size > 0
    assert 'summary:' in result.stdout

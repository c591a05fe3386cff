"""`timesformer_train average`: the mean of fine-tunes' weights, and what it refuses."""

import json

import pytest
import torch

from conftest import randomise_
from timesformer_ros import synthetic
from timesformer_ros.checkpoints import load_checkpoint, save_checkpoint
from timesformer_ros.model import TimeSformer, preset
from timesformer_ros.train import main

LABELS = list(synthetic.CLASSES)


def fine_tune(path, seed, labels=LABELS, clip_fps=7.5, **config):
    """Write a tiny checkpoint with random weights of its own (in place of one fine-tune)."""
    torch.manual_seed(seed)
    model = randomise_(TimeSformer(preset('tiny', num_classes=len(labels), **config))).eval()
    return save_checkpoint(path, model, labels, (0.45,) * 3, (0.225,) * 3, source='unit test',
                           clip_fps=clip_fps, training={'seed': seed})


def test_the_average_holds_the_mean_of_every_weight_and_records_its_parts(tmp_path, capsys):
    paths = [fine_tune(tmp_path / f'seed{s}', s) for s in (1, 2, 3)]
    out = tmp_path / 'soup'
    assert main(['average', str(out)] + [str(p) for p in paths]) == 0
    assert 'the mean of 3 checkpoints' in capsys.readouterr().out
    states = [load_checkpoint(p).model.state_dict() for p in paths]
    soup = load_checkpoint(out.with_suffix('.json'))
    for name, tensor in soup.model.state_dict().items():
        expected = sum(s[name] for s in states) / 3
        assert torch.allclose(tensor, expected, atol=1e-6), name
    clip = torch.rand(1, 8, 3, 32, 32)                  # (B, T, C, H, W), the tiny preset
    with torch.inference_mode():
        assert not torch.allclose(soup.model(clip), load_checkpoint(paths[0]).model(clip))
    assert soup.labels == LABELS and soup.clip_fps == 7.5 and soup.mean == (0.45,) * 3
    record = json.loads(out.with_suffix('.json').read_text())['training']
    assert record['command'].startswith('timesformer_train average ')
    assert [p['training'] for p in record['average_of']] == [{'seed': 1}, {'seed': 2},
                                                             {'seed': 3}]


def test_the_average_of_one_model_with_itself_gives_its_logits(tmp_path):
    path = fine_tune(tmp_path / 'one', 4)
    assert main(['average', str(tmp_path / 'same'), str(path), str(path)]) == 0
    clip = torch.rand(2, 8, 3, 32, 32)                  # (B, T, C, H, W), the tiny preset
    with torch.inference_mode():
        before = load_checkpoint(path).model(clip)
        after = load_checkpoint(tmp_path / 'same.json').model(clip)
    assert torch.allclose(before, after, atol=1e-6)


@pytest.mark.parametrize('other, message', [
    (dict(labels=LABELS[:6] + ['waving']), 'classes'),
    (dict(clip_fps=10.0), 'clip rate'),
    (dict(depth=3), "configuration {'depth': 3} against {'depth': 2}"),
])
def test_models_that_differ_are_refused_with_one_line_naming_the_file(
        tmp_path, capsys, other, message):
    first = fine_tune(tmp_path / 'a', 1)
    second = fine_tune(tmp_path / 'b', 2, **other)
    assert main(['average', str(tmp_path / 'soup'), str(first), str(second)]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and str(second) in err and message in err, err
    assert not (tmp_path / 'soup.json').exists()


def test_one_checkpoint_or_a_missing_one_is_refused(tmp_path, capsys):
    first = fine_tune(tmp_path / 'a', 1)
    assert main(['average', str(tmp_path / 'soup'), str(first)]) == 2
    assert 'at least two checkpoints, got 1' in capsys.readouterr().err
    assert main(['average', str(tmp_path / 'soup'), str(first), str(tmp_path / 'no.json')]) == 2
    assert 'no.json' in capsys.readouterr().err
    assert main(['average', str(tmp_path / 'no' / 'such' / 'dir' / 'soup'), str(first),
                 str(first)]) == 0      # the folder is made, as training's --out makes it
    assert main(['average', '/proc/soup', str(first), str(first)]) == 2
    assert 'cannot write /proc/soup' in capsys.readouterr().err

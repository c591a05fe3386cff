"""`timesformer_train average`: the mean of fine-tunes' weights, and what it refuses."""

import json
import shutil

import pytest
import torch

from conftest import randomise_
from timesformer_ros import synthetic
from timesformer_ros.checkpoints import load_checkpoint, save_checkpoint
from timesformer_ros.model import TimeSformer, preset
from timesformer_ros.train import MOTION_SYMMETRIES, main

LABELS = list(synthetic.CLASSES)


def fine_tune(path, seed, labels=LABELS, clip_fps=7.5, mean=(0.45,) * 3, init='start.json',
              symmetries=MOTION_SYMMETRIES, **config):
    """Write a tiny checkpoint with random weights of its own (in place of one fine-tune)."""
    torch.manual_seed(seed)
    model = randomise_(TimeSformer(preset('tiny', num_classes=len(labels), **config))).eval()
    return save_checkpoint(path, model, labels, mean, (0.225,) * 3, source=f'unit test {seed}',
                           clip_fps=clip_fps, training={'seed': seed, 'init': init},
                           **({'symmetries': symmetries} if symmetries else {}))


def test_the_average_holds_the_mean_of_every_weight_and_records_its_parts(tmp_path, capsys):
    paths = [fine_tune(tmp_path / f'seed{s}', s) for s in (1, 2, 3)]
    out = tmp_path / 'soup'
    assert main(['average', str(out)] + [str(p) for p in paths]) == 0
    captured = capsys.readouterr()
    assert 'the mean of 3 checkpoints' in captured.out and 'warning' not in captured.err
    states = [load_checkpoint(p).model.state_dict() for p in paths]
    soup = load_checkpoint(out.with_suffix('.json'))
    for name, tensor in soup.model.state_dict().items():
        expected = sum(s[name] for s in states) / 3
        assert torch.allclose(tensor, expected, atol=1e-6), name
    clip = torch.rand(1, 8, 3, 32, 32)                  # (B, T, C, H, W), the tiny preset
    with torch.inference_mode():
        assert not torch.allclose(soup.model(clip), load_checkpoint(paths[0]).model(clip))
    assert soup.labels == LABELS and soup.clip_fps == 7.5 and soup.mean == (0.45,) * 3
    assert soup.extra['symmetries'] == MOTION_SYMMETRIES        # all parts declare them
    record = json.loads(out.with_suffix('.json').read_text())['training']
    assert record['command'].startswith('timesformer_train average ')
    assert record['init'] == 'start.json'
    assert [(p['source'], p['training']['seed']) for p in record['average_of']] == [
        ('unit test 1', 1), ('unit test 2', 2), ('unit test 3', 3)]


def test_symmetries_only_one_part_declares_are_left_out(tmp_path):
    paths = [fine_tune(tmp_path / 'a', 1), fine_tune(tmp_path / 'b', 2, symmetries=None)]
    assert main(['average', str(tmp_path / 'soup')] + [str(p) for p in paths]) == 0
    assert 'symmetries' not in load_checkpoint(tmp_path / 'soup.json').extra


def test_the_average_of_a_model_and_its_copy_gives_its_logits(tmp_path):
    path = fine_tune(tmp_path / 'one', 4)
    copy = tmp_path / 'copy'
    shutil.copy(path.with_suffix('.safetensors'), copy.with_suffix('.safetensors'))
    copy.with_suffix('.json').write_text(path.read_text().replace('one.safetensors',
                                                                  'copy.safetensors'))
    assert main(['average', str(tmp_path / 'new' / 'same'), str(path),
                 str(copy.with_suffix('.json'))]) == 0       # the folder is made, as --out's
    clip = torch.rand(2, 8, 3, 32, 32)
    with torch.inference_mode():
        before = load_checkpoint(path).model(clip)
        after = load_checkpoint(tmp_path / 'new' / 'same.json').model(clip)
    assert torch.allclose(before, after, atol=1e-6)


@pytest.mark.parametrize('other, message', [
    (dict(labels=LABELS[:6] + ['waving']), "classes differ at index 6: 'waving' against "
                                           "'receding' (7 and 7 classes)"),
    (dict(clip_fps=10.0), 'clip rate 10.0 against 7.5'),
    (dict(mean=(0.5,) * 3), 'normalisation mean'),
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


@pytest.mark.parametrize('training', [{'seed': 2, 'init': 'other.json'}, 'by hand', None])
def test_parts_that_do_not_share_a_start_are_averaged_with_a_warning(tmp_path, capsys,
                                                                     training):
    paths = [fine_tune(tmp_path / 'a', 1), fine_tune(tmp_path / 'b', 2)]
    record = json.loads(paths[1].read_text())
    record['training'] = training           # another start, a record of another kind, none
    paths[1].write_text(json.dumps(record))
    assert main(['average', str(tmp_path / 'soup')] + [str(p) for p in paths]) == 0
    assert 'do not record one starting checkpoint' in capsys.readouterr().err
    assert 'init' not in json.loads((tmp_path / 'soup.json').read_text())['training']


@pytest.mark.parametrize('arguments, message', [
    (['soup', 'a.json'], 'at least two checkpoints, got 1'),
    (['soup', 'a.json', 'a.json'], 'a.json is named twice'),
    (['a', 'a.json', 'b.json'], 'OUT a would overwrite the part a.json'),
    (['b.safetensors', 'a.json', 'b.json'], 'would overwrite the part b.json'),
    (['.', 'a.json', 'b.json'], "OUT '.' is not a checkpoint name"),
    (['soup', 'a.json', 'missing.json'], 'missing.json'),
    (['/proc/soup', 'a.json', 'b.json'], 'cannot write /proc/soup'),
])
def test_bad_arguments_get_one_line_and_write_nothing(tmp_path, monkeypatch, capsys, arguments,
                                                      message):
    monkeypatch.chdir(tmp_path)
    fine_tune(tmp_path / 'a', 1)
    fine_tune(tmp_path / 'b', 2)
    before = sorted(tmp_path.iterdir())
    assert main(['average'] + arguments) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('timesformer_train average: error: ') \
        and message in err, err
    assert sorted(tmp_path.iterdir()) == before


def test_the_command_is_listed_in_the_training_help(capsys):
    with pytest.raises(SystemExit):
        main(['--help'])
    assert 'average' in capsys.readouterr().out

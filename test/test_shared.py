"""The small pieces every tool shares: an error as one line, the progress line, atomic writes."""

import io

import pytest

from timesformer_ros.bags import OutputError, accuracy, write_whole
from timesformer_ros.errors import brief, first_line
from timesformer_ros.progress import Progress


def test_an_error_is_one_line_without_escape_codes():
    exc = RuntimeError('\x1b[36mray::evaluate_unit()\x1b[39m failed\n  File "x.py", line 3\n')
    assert brief(exc) == 'RuntimeError: ray::evaluate_unit() failed'
    assert brief(exc, with_type=False) == 'ray::evaluate_unit() failed'
    assert brief(ValueError()) == 'ValueError'
    assert brief(ValueError('\n\n  second line first\nthird')) == 'ValueError: second line first'
    assert len(brief(ValueError('x' * 1000), limit=50)) == 50
    assert first_line('\x1b[1;31m\x1b[0m\n') == ''


def test_the_progress_line_counts_and_estimates():
    stream = io.StringIO()
    bar = Progress(10, 'frames', stream=stream, width=10)
    bar.update(5, '3 windows')
    bar.update(10, ' (0 failed)')
    bar.close()
    lines = stream.getvalue().split('\r')[1:]
    assert lines[0].startswith('[#####     ] 5/10 frames, 3 windows, ') and 'ETA' in lines[0]
    assert lines[1].startswith('[##########] 10/10 frames (0 failed), ') and 'ETA' not in lines[1]
    assert stream.getvalue().endswith('\n')
    quiet = io.StringIO()
    Progress(3, 'steps', enabled=False, stream=quiet).update(1)
    assert quiet.getvalue() == ''


def test_accuracy_of_a_confusion_matrix():
    assert accuracy([[3, 1], [0, 4]]) == pytest.approx(7 / 8)
    assert accuracy([[0, 0], [0, 0]]) == 0.0


def test_a_whole_file_is_renamed_into_place_or_not_written(tmp_path):
    path = tmp_path / 'summary.json'
    write_whole(path, '{}\n')
    assert path.read_text() == '{}\n' and [p.name for p in tmp_path.iterdir()] == [path.name]
    with pytest.raises(OutputError, match='missing'):
        write_whole(tmp_path / 'missing' / 'x.json', '{}')
    assert [p.name for p in tmp_path.iterdir()] == [path.name]

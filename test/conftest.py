"""Shared fixtures: seeds, tiny configurations, reference models."""

import ast
import itertools
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from timesformer_ros.processes import ScriptNotFound, console_command, finish, keep_dds_on_loopback

# Tests never touch a GPU even where one exists: it is hidden from this process and from the
# programs the tests start (CUDA initialises lazily, so this holds although torch is imported).
# TIMESFORMER_TEST_GPU=1 leaves it visible, for a run on a GPU machine.
if not os.environ.get('TIMESFORMER_TEST_GPU'):
    os.environ['CUDA_VISIBLE_DEVICES'] = ''
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


def randomise_(module: torch.nn.Module, std: float = 0.2) -> torch.nn.Module:
    """Give every parameter random values, so a wrong mapping cannot hide behind a zero.

    Zero-initialised parts (temporal_fc, time embeddings) then carry signal too.
    """
    with torch.no_grad():
        for param in module.parameters():
            param.normal_(0.0, std)
    return module


@pytest.fixture
def make_hf_model():
    """Make a randomly initialised transformers TimesformerForVideoClassification (tiny config)."""
    transformers = pytest.importorskip('transformers')

    def make(attention_type='divided_space_time', num_labels=5, **overrides):
        values = dict(image_size=32, patch_size=8, num_frames=4, hidden_size=32,
                      num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                      attention_type=attention_type, num_labels=num_labels)
        values.update(overrides)
        config = transformers.TimesformerConfig(**values)
        config.id2label = {i: f'action_{i}' for i in range(num_labels)}
        config.label2id = {v: k for k, v in config.id2label.items()}
        return randomise_(transformers.TimesformerForVideoClassification(config)).eval()

    return make


def hf_reference_logits(hf_model, video: torch.Tensor) -> torch.Tensor:
    """Logits of the official network computed with transformers' modules.

    For divided and joint attention transformers' logits are the official ones. For space_only
    transformers returns one row per frame, while the official network averages the frames'
    token features before the final norm and head; that is rebuilt here from transformers'
    pre-norm encoder output (hidden_states[-1]) with its own layernorm and classifier.
    """
    with torch.no_grad():
        out = hf_model(pixel_values=video, output_hidden_states=True)
        if hf_model.config.attention_type != 'space_only':
            return out.logits
        batch, frames = video.shape[:2]
        cls = out.hidden_states[-1][:, 0].reshape(batch, frames, -1).mean(dim=1)
        return hf_model.classifier(hf_model.timesformer.layernorm(cls))


# -- ROS 2 over loopback ----------------------------------------------------------------------
# DDS must stay on loopback on these machines: every rclpy process (this one and the ones the
# tests start, which inherit the environment) uses the project's loopback-only Fast DDS profile.
# Set before rclpy loads.
REPO = Path(__file__).resolve().parents[1]
keep_dds_on_loopback(checkout=REPO)
os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')

_domain_counter = itertools.count()
# Test domains: FIRST:COUNT, so that suites run side by side (two checkouts) never share one.
_DOMAIN_FIRST, _DOMAIN_COUNT = (int(part) for part in
                                os.environ.get('TIMESFORMER_TEST_DOMAINS', '20:80').split(':'))


def _console_scripts() -> dict:
    """{script: 'module:function'} of setup.py's console_scripts: their one source."""
    tree = ast.parse((REPO / 'setup.py').read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, 'id', '') == 'setup')
    points = ast.literal_eval(next(k.value for k in call.keywords if k.arg == 'entry_points'))
    return dict(line.replace(' ', '').split('=') for line in points['console_scripts'])


CONSOLE_SCRIPTS = _console_scripts()


def console_script(name: str) -> list:
    """Return the installed console script `name`'s command; the test skips where there is none.

    Tests start what users start: never `python -m` in its place (processes.find_script).
    """
    assert name in CONSOLE_SCRIPTS, f'{name} is not a console script of setup.py'
    try:
        return console_command(name)
    except ScriptNotFound as exc:
        pytest.skip(str(exc))


def fresh_domain() -> int:
    """Return a ROS_DOMAIN_ID for one test, from TIMESFORMER_TEST_DOMAINS."""
    return _DOMAIN_FIRST + (os.getpid() * 7 + next(_domain_counter)) % _DOMAIN_COUNT


class Ros:
    """An rclpy context on its own domain, with a node and an executor for the test side."""

    def __init__(self, domain_id: int):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        self.domain_id = domain_id
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(f'tester_{domain_id}', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.env = {**os.environ, 'ROS_DOMAIN_ID': str(domain_id), 'PYTHONUNBUFFERED': '1'}

    def spin_until(self, condition, timeout: float, step: float = 0.02) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            self.executor.spin_once(timeout_sec=step)
        return condition()

    def spin_for(self, seconds: float):
        """Keep serving callbacks for `seconds` (pacing, not synchronisation)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=min(0.02, max(deadline - time.monotonic(), 0)))

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


@pytest.fixture
def ros():
    pytest.importorskip('rclpy')
    handle = Ros(fresh_domain())
    yield handle
    handle.close()


@pytest.fixture(scope='session')
def small_checkpoint(tmp_path_factory):
    """Save a small random model in the project's format: fast enough for 30 Hz on one core.

    It records a clip rate of 15 fps, so that the default parameters sample 30 Hz cameras at
    every second frame (the checkpoint's rate).
    """
    from timesformer_ros.checkpoints import save_checkpoint
    from timesformer_ros.model import TimeSformer, TimeSformerConfig
    torch.manual_seed(0)
    config = TimeSformerConfig(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2,
                               num_heads=4, num_classes=3)
    model = randomise_(TimeSformer(config))
    return save_checkpoint(tmp_path_factory.mktemp('ckpt') / 'small', model,
                           ['left', 'right', 'still'], source='test fixture', clip_fps=15.0)


def status_kib(pid: int, field: str) -> int:
    """Return a kB field of /proc/PID/status (VmRSS, VmHWM: the peak RSS)."""
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith(field + ':'):
            return int(line.split()[1])
    raise AssertionError(f'no {field} in /proc/{pid}/status')


def reset_peak_rss(pid: int):
    """Reset the process's VmHWM (peak RSS) to its current RSS (Linux clear_refs 5)."""
    Path(f'/proc/{pid}/clear_refs').write_text('5')


# launch sends SIGTERM 5 s after SIGINT (ExecuteProcess's sigterm_timeout): a node must be gone
# by then on any machine, a loaded one included. What it takes on an idle one is a benchmark.
STOP_WITHIN_S = 5.0


class NodeProcess:
    """`timesformer_node` started as users start it, with --ros-args."""

    def __init__(self, ros, *ros_args, params_file=REPO / 'config' / 'timesformer.yaml'):
        cmd = console_script('timesformer_node') + ['--ros-args', '--params-file',
                                                    str(params_file), *ros_args]
        self.proc = subprocess.Popen(cmd, env=ros.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def stop(self, sig=signal.SIGINT, timeout=2 * STOP_WITHIN_S):
        """Signal the node; returns (exit code, seconds it took, output)."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        code, output = finish(self.proc, timeout)
        return code, time.monotonic() - started, output

    def rss_mb(self) -> float:
        return status_kib(self.proc.pid, 'VmRSS') / 1024

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start_node(ros):
    started = []

    def start(*args, **kwargs):
        node = NodeProcess(ros, *args, **kwargs)
        started.append(node)
        return node

    yield start
    for node in started:
        node.kill()


def hiding_env(directory: Path, modules, env=None) -> dict:
    """Return `env` with Python started so that `modules` (top-level names) cannot be imported.

    A sitecustomize.py in `directory`, first on PYTHONPATH, puts a finder at the front of
    sys.meta_path that refuses them: a machine without those packages, for a child process.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / 'sitecustomize.py').write_text(
        'import importlib.abc, sys\n'
        f'HIDDEN = {sorted(modules)!r}\n'
        'class Hide(importlib.abc.MetaPathFinder):\n'
        '    def find_spec(self, name, path=None, target=None):\n'
        "        if name.split('.')[0] in HIDDEN:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (hidden)', name=name)\n"
        'sys.meta_path.insert(0, Hide())\n')
    env = dict(os.environ if env is None else env)
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(directory), env.get('PYTHONPATH'))
                                        if p)
    return env

"""The code's shape: lint, the direction of imports, declared dependencies, documented names."""

import ast
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest

from conftest import REPO

PACKAGE = REPO / 'timesformer_ros'
PYTHON_TREES = ['timesformer_ros', 'test', 'benchmarks', 'launch', 'setup.py']
ROS_PACKAGES = {'rclpy', 'sensor_msgs', 'std_msgs', 'diagnostic_msgs', 'builtin_interfaces',
                'rcl_interfaces', 'rosgraph_msgs', 'launch', 'launch_ros', 'vision_msgs',
                'geometry_msgs'}

# Which modules each layer may import from the package (README, "Development": the map).
# The model knows nothing of frames or ROS; the runtime nothing of rclpy; only the ROS layer
# and the programs that start ROS processes import rclpy, and they import the rest. A
# subpackage (bags) is one entry: its modules are in its layer. `base` holds small pieces that
# every layer uses and that import nothing of the package.
LAYERS = {
    'base': {'errors', 'progress', 'signals', 'digests', 'rates'},
    'model': {'model', 'checkpoints'},
    'runtime': {'interface', 'messages', 'frames', 'clips', 'engine', 'pipeline', 'segments',
                'outputs', 'synthetic', 'diagnostics', 'onnx_engine', 'predictions', 'locate',
                'views'},
    'ros': {'node', 'camera', 'spin', 'entry'},
    'tools': {'bags', 'fleet', 'cluster', 'clip_folder', 'train', 'train_locator', 'average',
              'finetune', 'finetune_ray', 'world', 'camera_world', 'camera_effects', 'demo',
              'bench', 'convert', 'processes', 'export', 'footage', 'footage_labels', 'quality',
              'scene_quality'},
}
MAY_IMPORT = {'base': set(), 'model': {'base', 'model'}, 'runtime': {'base', 'model', 'runtime'},
              'ros': {'base', 'model', 'runtime', 'ros'},
              'tools': {'base', 'model', 'runtime', 'tools'}}
# The most lines a module may have: past it, a module holds more than one concern.
MAX_MODULE_LINES = 600
# Modules allowed past it, each with the reason.
LONG_MODULES = {}


def _module_name(path) -> str:
    """Return a package file's dotted name below the package: 'bags.cli', 'bags' (its __init__)."""
    parts = list(path.relative_to(PACKAGE).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def _modules() -> dict:
    """{dotted name below the package: path} of every module of the package, subpackages too."""
    return {_module_name(path): path for path in sorted(PACKAGE.rglob('*.py'))
            if path.name != '__main__.py' and _module_name(path)}


def _imports(path) -> list:
    """Return (module imported, at module level?) for every import in a file.

    Relative imports keep their dots (`..fleet`, `.base`); `from . import x` is `.x`.
    """
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            name = ('.' * node.level) + (node.module or '')
            if node.level and not node.module:      # from . import x
                found += [(name + a.name, id(node) in top) for a in node.names]
            else:
                found.append((name, id(node) in top))
    return found


def _package_imports(path, modules: dict) -> set:
    """Return the package modules (dotted, as in `modules`) that the file at `path` imports.

    A relative import is resolved against the file's own package; `from . import x` is the
    module x where there is one, else a name of the package's __init__.
    """
    here = _module_name(path).split('.') if path.name != '__init__.py' \
        else _module_name(path).split('.') + ['']
    targets = set()
    for name, _ in _imports(path):
        if name.startswith('timesformer_ros.'):
            parts = name.split('.')[1:]
        elif name.startswith('.'):
            level = len(name) - len(name.lstrip('.'))
            base = [p for p in here[:len(here) - level] if p]
            parts = base + [p for p in name.lstrip('.').split('.') if p]
        else:
            continue
        while parts and '.'.join(parts) not in modules:
            parts.pop()                  # a name inside a module, or the package's __init__
        if parts:
            targets.add('.'.join(parts))
    return targets


def _layer(module: str) -> str:
    top = module.split('.')[0]
    for layer, members in LAYERS.items():
        if top in members:
            return layer
    raise AssertionError(f'timesformer_ros/{module} is in no layer of the map')


def _cycle(graph: dict) -> list:
    """Return one import circle of `graph` ({module: modules it imports}) as a path, or []."""
    state, stack = {}, []

    def visit(node) -> list:
        state[node] = 'open'
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 'open':
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        state[node] = 'done'
        stack.pop()
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_flake8_with_the_checkout_settings():
    """Lint with setup.cfg's [flake8] section (99 columns), as a bare `flake8` does."""
    flake8 = pytest.importorskip('flake8')
    assert flake8
    result = subprocess.run([sys.executable, '-m', 'flake8', *PYTHON_TREES], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_docstrings_follow_pep257_as_ament_pep257_checks_them():
    """Docstrings follow setup.cfg's [pydocstyle] section: pydocstyle's pep257 convention.

    Missing docstrings are allowed (D100-D107), as in ament_pep257's default.
    """
    pytest.importorskip('pydocstyle')
    result = subprocess.run([sys.executable, '-m', 'pydocstyle', *PYTHON_TREES],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_settings_live_in_setup_cfg():
    import configparser
    config = configparser.ConfigParser()
    config.read(REPO / 'setup.cfg')
    assert config['flake8']['max-line-length'] == '99'
    assert config['pydocstyle']['convention'] == 'pep257'


def test_every_module_is_in_one_layer_and_imports_point_one_way():
    modules = _modules()
    for module, path in modules.items():
        layer = _layer(module)
        for target in _package_imports(path, modules):
            assert _layer(target) in MAY_IMPORT[layer] or target == module.split('.')[0], \
                f'{module} ({layer}) imports {target} ({_layer(target)})'
        if layer in ('base', 'model', 'runtime'):
            for name, at_top in _imports(path):
                if at_top:                  # inside a function: rclpy's turn
                    assert name.split('.')[0] not in ROS_PACKAGES, f'{module} imports {name}'


def test_no_module_imports_itself_through_others():
    """The package's imports, at the top or inside functions, make no circle."""
    modules = _modules()
    graph = {module: _package_imports(path, modules) - {module}
             for module, path in modules.items()}
    circle = _cycle(graph)
    assert not circle, 'import circle: ' + ' -> '.join(circle)


def test_the_circle_check_finds_a_circle():
    assert _cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) in (
        ['a', 'b', 'c', 'a'], ['b', 'c', 'a', 'b'], ['c', 'a', 'b', 'c'])
    assert _cycle({'a': {'b'}, 'b': set(), 'c': {'a', 'b'}}) == []


def test_relative_imports_of_subpackages_resolve_to_modules():
    modules = _modules()
    assert {'fleet', 'bags', 'bags.base', 'bags.write'} <= \
        _package_imports(PACKAGE / 'bags' / 'cli.py', modules)
    assert 'bags' in _package_imports(PACKAGE / 'fleet.py', modules)


def test_no_module_is_longer_than_its_limit():
    modules = _modules()
    too_long = {module: lines for module, path in modules.items()
                if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
                and module not in LONG_MODULES}
    assert not too_long, f'modules over {MAX_MODULE_LINES} lines: {too_long}'


def test_tools_import_without_rclpy():
    """Bag evaluation, training, the demo's scoring and the model import without ROS.

    They import with rclpy and every ROS message package hidden (a machine without ROS).
    """
    modules = ['bags', 'bags.cli', 'fleet', 'train', 'average', 'demo', 'bench', 'convert',
               'interface', 'messages', 'outputs', 'pipeline', 'engine', 'segments',
               'checkpoints', 'model', 'synthetic', 'errors', 'progress', 'onnx_engine', 'export',
               'digests', 'locate', 'views']
    code = f'''
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {sorted(ROS_PACKAGES)!r}:
            raise ImportError(f'{{name}} is hidden')
sys.meta_path.insert(0, Hide())
import timesformer_ros.bags, timesformer_ros.train
for name in {modules!r}:
    __import__('timesformer_ros.' + name)
print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(ROS_PACKAGES)!r}))
'''
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'


def test_package_xml_declares_exactly_the_ros_packages_the_code_imports():
    declared = {e.text for e in ElementTree.parse(REPO / 'package.xml').getroot()
                if e.tag in ('exec_depend', 'depend')}
    imported = set()
    for path in [*PACKAGE.rglob('*.py'), *(REPO / 'launch').glob('*.py')]:
        imported |= {name.split('.')[0] for name, _ in _imports(path)} & ROS_PACKAGES
    assert imported - declared == set(), 'imported but not in package.xml'
    assert {d for d in declared if d in ROS_PACKAGES} - imported == set(), \
        'declared but never imported'


def test_readme_documents_every_topic_and_parameter_as_the_code_has_them():
    from timesformer_ros import camera, node
    readme = (REPO / 'README.md').read_text()
    rows = dict(re.findall(r'^\| `([^`]+)`(?: \(in\))? \| ([^ |,]+)', readme, flags=re.M))
    for topic in node.TOPICS:
        assert rows.get(topic.name) == topic.type, (topic.name, rows.get(topic.name))
    for param in (*node.PARAMETERS, *camera.PARAMETERS):
        assert f'`{param.name}`' in readme, param.name

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
# and the programs that start ROS processes import rclpy, and they import the rest.
LAYERS = {
    'model': {'model', 'checkpoints'},
    'runtime': {'interface', 'messages', 'frames', 'clips', 'engine', 'pipeline', 'segments',
                'outputs', 'synthetic', 'locate'},
    'ros': {'node', 'camera', 'spin', 'entry'},
    'tools': {'bags', 'fleet', 'train', 'world', 'demo', 'bench', 'convert', 'processes'},
}
MAY_IMPORT = {'model': {'model'}, 'runtime': {'model', 'runtime'},
              'ros': {'model', 'runtime', 'ros'}, 'tools': {'model', 'runtime', 'tools'}}


def _imports(path) -> list:
    """Return (module imported, at module level?) for every import in a file."""
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            name = ('.' * node.level) + (node.module or '')
            if node.level and not node.module:      # from . import x
                found += [('.' + a.name, id(node) in top) for a in node.names]
            else:
                found.append((name, id(node) in top))
    return found


def _layer(module: str) -> str:
    for layer, modules in LAYERS.items():
        if module in modules:
            return layer
    raise AssertionError(f'timesformer_ros/{module}.py is in no layer of the map')


def test_flake8_at_99_columns():
    flake8 = pytest.importorskip('flake8')
    assert flake8
    result = subprocess.run([sys.executable, '-m', 'flake8', '--max-line-length', '99',
                             *PYTHON_TREES], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_docstrings_follow_pep257_as_ament_pep257_checks_them():
    """Docstrings follow pydocstyle's pep257 convention.

    Missing docstrings are allowed (D100-D107), as in ament_pep257's default.
    """
    pytest.importorskip('pydocstyle')
    result = subprocess.run([sys.executable, '-m', 'pydocstyle', '--convention=pep257',
                             '--add-ignore=D100,D101,D102,D103,D104,D105,D106,D107',
                             r'--match=.*\.py', *PYTHON_TREES],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_module_is_in_one_layer_and_imports_point_one_way():
    for path in sorted(PACKAGE.glob('*.py')):
        if path.stem == '__init__':
            continue
        layer = _layer(path.stem)
        for name, at_top in _imports(path):
            target = name.lstrip('.').split('.')[0]
            if name.startswith('.') and (PACKAGE / f'{target}.py').exists():
                # (else a name of the package's __init__, which any module may use)
                assert _layer(target) in MAY_IMPORT[layer], \
                    f'{path.name} ({layer}) imports {target} ({_layer(target)})'
            if layer in ('model', 'runtime') and at_top:   # inside a function: rclpy's turn
                assert name.split('.')[0] not in ROS_PACKAGES, f'{path.name} imports {name}'


def test_tools_import_without_rclpy():
    """Bag evaluation, training, the demo's scoring and the model import without ROS.

    They import with rclpy and every ROS message package hidden (a machine without ROS).
    """
    modules = ['bags', 'train', 'demo', 'bench', 'convert', 'interface', 'messages', 'outputs',
               'pipeline', 'engine', 'segments', 'checkpoints', 'model', 'synthetic', 'locate']
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
    for path in [*PACKAGE.glob('*.py'), *(REPO / 'launch').glob('*.py')]:
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

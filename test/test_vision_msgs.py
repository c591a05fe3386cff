"""The vision_msgs types: built for development with the fields of vision_msgs 4.1.1.

Type hashes (REP 2011) depend on field names, types and defaults, not on comments; equal
hashes mean the same wire format and that ROS 2 tools match our topics with the distribution's
vision_msgs. The node test checks the hashes DDS advertises for the running node's topics.
"""

import json
from pathlib import Path

import pytest

from conftest import REPO
from timesformer_ros.messages import VISION_TYPES, register_vision_types, vision_definition_dirs

# From vision_msgs 4.1.1 as the distribution builds it. The last five were computed with
# rosbags 0.11.9 (`hash_rihs01`, REP 2011) from the .msg files of ros-perception/vision_msgs at
# its tag 4.1.1 (geometry_msgs from the Kilted wheels); the same computation gives the first
# four, recorded earlier, exactly.
VISION_MSGS_4_1_1 = {
    'vision_msgs/msg/Classification':
        'RIHS01_f74db28d0eaef3afb78f48bf2161cd709a1383a0309d3454383b25be11345143',
    'vision_msgs/msg/ObjectHypothesis':
        'RIHS01_51da43cec11c01957a64d1e05a24acd18aae7745ec30b74348ad5f6d634f7f90',
    'vision_msgs/msg/LabelInfo':
        'RIHS01_3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783',
    'vision_msgs/msg/VisionClass':
        'RIHS01_1e4a11f0fed50b5623cb8ff26ca0e37952a48a9c074d16f804b44e9164c2037a',
    'vision_msgs/msg/Point2D':
        'RIHS01_eab0e83f44ab4de92ceaf76dd7d0e7638f2bdd1d16ffbe16c7a136c48e407247',
    'vision_msgs/msg/Pose2D':
        'RIHS01_b0b5d1d7b4c20dd4fcde3ed1d4b289a919290572007d67a97043814db25d3648',
    'vision_msgs/msg/BoundingBox2D':
        'RIHS01_008eacbb0cf8f26e83795547bed013eec3675485ef386ec056d80eaaf1c1ce2f',
    'vision_msgs/msg/ObjectHypothesisWithPose':
        'RIHS01_41c12344c0396c48b81df12467c192d99b2a0eb1463c5c37194e4223251c80bc',
    'vision_msgs/msg/Detection2D':
        'RIHS01_0d12b69df5c593b3455b7346fac8205437a7d4bcb09b9e0e0b2dde787ded38ea',
}


def installed_share() -> Path:
    """Return the share/vision_msgs/msg directory the build (or a ROS install) put in place."""
    for folder in vision_definition_dirs():
        if (folder / 'Classification.json').is_file():
            return folder
    pytest.fail('no built vision_msgs found (make builds it into .venv)')


@pytest.mark.parametrize('typename', VISION_TYPES)
def test_the_built_types_have_the_hashes_of_vision_msgs_4_1_1(typename):
    """The hashes rosidl computed when it built the package (share/.../msg/<Name>.json)."""
    name = typename.rsplit('/', 1)[1]
    description = json.loads((installed_share() / f'{name}.json').read_text())
    hashes = {h['type_name']: h['hash_string'] for h in description['type_hashes']}
    assert hashes[typename] == VISION_MSGS_4_1_1[typename]


@pytest.mark.parametrize('where', ['repository', 'installed'])
def test_the_definitions_give_the_same_hashes_in_rosbags(where):
    """The definitions kept in dev/interfaces, and those the bag writer finds installed."""
    from rosbags.typesys import Stores, get_typestore
    store = get_typestore(Stores.ROS2_KILTED)
    folders = [REPO / 'dev' / 'interfaces' / 'vision_msgs' / 'msg'] \
        if where == 'repository' else None
    register_vision_types(store, folders)
    for typename, expected in VISION_MSGS_4_1_1.items():
        assert store.hash_rihs01(typename) == expected


def test_the_python_classes_import_and_build(tmp_path):
    from timesformer_ros.messages import rclpy_types
    types = rclpy_types()
    msg = types.classification(types.header(1_500_000_000, 'cam'), [(3, 0.75), ('1', 0.25)])
    assert [(h.class_id, h.score) for h in msg.results] == [('3', 0.75), ('1', 0.25)]
    info = types.label_info(types.header(0, ''), ['a', 'b'], 0.5)
    assert [(c.class_id, c.class_name) for c in info.class_map] == [(0, 'a'), (1, 'b')]
    with pytest.raises(ValueError, match='uint16'):
        types.label_info(types.header(0, ''), ['x'] * 65535, 0.0)
    detection = types.detection(types.header(7, 'cam'), (10.0, 20.0, 50.0, 40.0),
                                [('2', 0.5), ('0', 0.25)])
    assert (detection.bbox.center.position.x, detection.bbox.center.position.y,
            detection.bbox.size_x, detection.bbox.size_y) == (30.0, 30.0, 40.0, 20.0)
    assert [(r.hypothesis.class_id, r.hypothesis.score) for r in detection.results] == \
        [('2', 0.5), ('0', 0.25)]
    assert detection.results[0].pose.pose.orientation.w == 1.0

"""launch_testing: the launch file starts the node, which answers on its topics and exits 0.

Runs where launch_testing is installed (a ROS 2 install); skipped here, where it cannot be
installed. test_node.py checks the same behaviour by starting the console script directly.
"""

import json
import os
import time
import unittest
from pathlib import Path

import pytest

launch_testing = pytest.importorskip('launch_testing')
import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
IMAGE_TOPIC = '/launch_test/image_raw'
os.environ.setdefault('ROS_DOMAIN_ID', str(90 + os.getpid() % 10))


@pytest.mark.launch_test
def generate_test_description():
    include = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(REPO / 'launch' / 'timesformer.launch.py')),
        launch_arguments={'image': IMAGE_TOPIC, 'device': 'cpu',
                          'params_file': str(REPO / 'config' / 'timesformer.yaml')}.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestTopics(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node('launch_tester')

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def test_results_carry_the_stamps_of_published_frames(self):
        results, labels = [], []
        self.node.create_subscription(String, '/timesformer/window',
                                      lambda m: results.append(json.loads(m.data)), 10)
        self.node.create_subscription(String, '/timesformer/label',
                                      lambda m: labels.append(m.data), 10)
        pub = self.node.create_publisher(Image, IMAGE_TOPIC, qos_profile_sensor_data)
        stamps = set()
        deadline = time.monotonic() + 60.0
        i = 0
        while time.monotonic() < deadline and len(results) < 5:
            msg = Image(height=120, width=160, encoding='rgb8', step=480)
            pixels = np.random.default_rng(i).integers(0, 256, 120 * 160 * 3, dtype=np.uint8)
            msg.data = pixels.tobytes()
            msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + i // 30, (i % 30) * 33_333_333
            msg.header.frame_id = 'launch_camera'
            stamps.add(msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec)
            pub.publish(msg)
            i += 1
            rclpy.spin_once(self.node, timeout_sec=1 / 30)
        self.assertGreaterEqual(len(results), 5)
        for result in results:
            stamp = result['header']['stamp']
            self.assertIn(stamp['sec'] * 10 ** 9 + stamp['nanosec'], stamps)
            self.assertEqual(result['header']['frame_id'], 'launch_camera')
        self.assertTrue(labels)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):

    def test_exit_code(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)

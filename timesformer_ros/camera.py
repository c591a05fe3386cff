"""timesformer_synthetic_camera: an endless synthetic camera.

Use it to run the node without a camera or to check the wiring on a robot (what the node receives,
what it publishes).

Publishes `image` (sensor_msgs/Image) at `rate` Hz and, for every frame, the true motion on
`motion` (std_msgs/String holding JSON {"stamp": {"sec", "nanosec"}, "frame_id", "label"}),
with the frame's stamp, so a listener can score the node's results against the truth.
Frames come from `synthetic.SyntheticStream`: seeded, a scripted or random sequence of motions.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String

from .interface import Param, Topic, help_text
from .messages import rclpy_types, stamp_dict
from .spin import StartupError, declare, run_node
from .synthetic import CLASSES, SyntheticStream

ENCODINGS = ('rgb8', 'bgr8', 'mono8')
PARAMETERS = (
    Param('rate', 30.0, 'Frames per second (steady clock).', low=0.1, high=1000.0),
    Param('width', 640, 'Image width.', low=16, high=8192),
    Param('height', 480, 'Image height.', low=16, high=8192),
    Param('encoding', 'rgb8', 'Image encoding.', choices=ENCODINGS),
    Param('seed', 0, 'Random seed of the scene sequence.'),
    Param('script', [''], f'Motions to cycle through (from {", ".join(CLASSES)}); empty for '
          'a random sequence.'),
    Param('frame_id', 'camera', 'frame_id of the images.'),
    Param('max_frames', 0, 'Stop after this many frames (0: never).', low=0, high=2 ** 62),
    Param('reliable', False, 'Publish with reliable QoS (default sensor data, best effort).'),
    Param('wait_for_subscribers', 0, 'Start once `image` and `motion` each have this many '
          'subscribers, so they get the first frame (0: at once).', low=0, high=1000),
)
TOPICS = (
    Topic('out', 'image', 'sensor_msgs/Image', 'synthetic frames at `rate`; remap it'),
    Topic('out', 'motion', 'std_msgs/String', "JSON truth per frame: {stamp, frame_id, label}"),
)
SUMMARY = """A synthetic camera: seeded procedural motion video with the true motion of every
frame, to run the node without a camera or to check a robot's wiring."""


def encode(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """Return the pixels of an RGB frame in one of `ENCODINGS`."""
    if encoding == 'bgr8':
        return rgb[..., ::-1]
    if encoding == 'mono8':
        return rgb.mean(axis=2).astype(np.uint8)
    return rgb


class SyntheticCamera(Node):

    def __init__(self, **kwargs):
        super().__init__('synthetic_camera', **kwargs)
        values = declare(self, PARAMETERS)
        rate, width, height = values['rate'], values['width'], values['height']
        self.encoding, self.frame_id = values['encoding'], values['frame_id']
        self.max_frames, reliable = values['max_frames'], values['reliable']
        self.wait_for = values['wait_for_subscribers']
        seed, script = values['seed'], values['script']
        script = [s for s in script if s]
        self.stream = SyntheticStream(seed=seed, width=width, height=height, fps=rate,
                                      script=script or None).frames()
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE) if reliable \
            else qos_profile_sensor_data
        self.types = rclpy_types()
        self.pub_image = self.create_publisher(Image, 'image', qos)
        self.pub_motion = self.create_publisher(String, 'motion', 50)
        self.count = 0
        if self.wait_for:
            self.get_logger().info(f'waiting for {self.wait_for} subscriber(s) on '
                                   f'{self.pub_image.topic_name} and {self.pub_motion.topic_name}')
        self.timer = self.create_timer(1.0 / rate, self._tick,
                                       clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _tick(self):
        if not self.context.ok():
            return
        if self.max_frames and self.count >= self.max_frames:
            self.timer.cancel()
            raise SystemExit(0)
        if self.count == 0 and not self._subscribed():
            return
        rgb, label = next(self.stream)
        stamp = self.get_clock().now().nanoseconds
        self.pub_image.publish(self.types.image(self.types.header(stamp, self.frame_id),
                                                encode(rgb, self.encoding), self.encoding))
        self.pub_motion.publish(String(data=json.dumps(
            {'stamp': stamp_dict(stamp), 'frame_id': self.frame_id, 'label': label})))
        self.count += 1

    def _subscribed(self) -> bool:
        """Whether both topics have `wait_for_subscribers` subscribers (checked until frame 0)."""
        return all(publisher.get_subscription_count() >= self.wait_for
                   for publisher in (self.pub_image, self.pub_motion))


def main(args=None) -> int:
    return run_node(SyntheticCamera, 'synthetic_camera', (StartupError, ValueError), args,
                    help_text('timesformer_synthetic_camera', SUMMARY, PARAMETERS, TOPICS))


if __name__ == '__main__':
    sys.exit(main())

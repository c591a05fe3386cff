"""timesformer_synthetic_camera: an endless synthetic camera, to run the node without one or to
check the wiring on a robot (what the node receives, what it publishes).

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
from .results import stamp_dict
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
)
TOPICS = (
    Topic('out', 'image', 'sensor_msgs/Image', 'synthetic frames at `rate`; remap it'),
    Topic('out', 'motion', 'std_msgs/String', "JSON truth per frame: {stamp, frame_id, label}"),
)
SUMMARY = """A synthetic camera: seeded procedural motion video with the true motion of every
frame, to run the node without a camera or to check a robot's wiring."""


def to_image_msg(rgb: np.ndarray, encoding: str, header) -> Image:
    if encoding == 'bgr8':
        data = np.ascontiguousarray(rgb[..., ::-1])
    elif encoding == 'mono8':
        data = np.ascontiguousarray(rgb.mean(axis=2).astype(np.uint8))
    else:
        data = np.ascontiguousarray(rgb)
    channels = 1 if data.ndim == 2 else data.shape[2]
    msg = Image(height=data.shape[0], width=data.shape[1], encoding=encoding, is_bigendian=0,
                step=data.shape[1] * channels)
    if header is not None:
        msg.header = header
    msg.data = data.tobytes()
    return msg


class SyntheticCamera(Node):

    def __init__(self, **kwargs):
        super().__init__('synthetic_camera', **kwargs)
        values = declare(self, PARAMETERS)
        rate, width, height = values['rate'], values['width'], values['height']
        self.encoding, self.frame_id = values['encoding'], values['frame_id']
        self.max_frames, reliable = values['max_frames'], values['reliable']
        seed, script = values['seed'], values['script']
        script = [s for s in script if s]
        self.stream = SyntheticStream(seed=seed, width=width, height=height, fps=rate,
                                      script=script or None).frames()
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE) if reliable \
            else qos_profile_sensor_data
        self.pub_image = self.create_publisher(Image, 'image', qos)
        self.pub_motion = self.create_publisher(String, 'motion', 50)
        self.count = 0
        self.timer = self.create_timer(1.0 / rate, self._tick,
                                       clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _tick(self):
        if not self.context.ok():
            return
        if self.max_frames and self.count >= self.max_frames:
            self.timer.cancel()
            raise SystemExit(0)
        rgb, label = next(self.stream)
        msg = to_image_msg(rgb, self.encoding, None)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.frame_id
        self.pub_image.publish(msg)
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.pub_motion.publish(String(data=json.dumps(
            {'stamp': stamp_dict(stamp_ns), 'frame_id': self.frame_id, 'label': label})))
        self.count += 1


def main(args=None) -> int:
    return run_node(SyntheticCamera, 'synthetic_camera', (StartupError, ValueError), args,
                    help_text('timesformer_synthetic_camera', SUMMARY, PARAMETERS, TOPICS))


if __name__ == '__main__':
    sys.exit(main())

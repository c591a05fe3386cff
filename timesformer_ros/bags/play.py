"""Replaying a bag's images over DDS at the recorded pace (`timesformer_bag play`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from ..messages import convert_image, rclpy_types, split_ns
from .base import IMAGE_TYPES
from .read import check_topic, iter_messages, list_topics


def play(bag: Path, topic: str, rate: float = 1.0, loop: bool = False, clock: bool = False,
         reliable: bool = False, out_topic: Optional[str] = None) -> int:
    """Publish the bag's images at the recorded pace times `rate` (and /clock when asked)."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CompressedImage, Image
    if rate <= 0:
        raise ValueError(f'rate must be > 0, got {rate}')
    kinds = list_topics(bag)
    check_topic(kinds, topic, IMAGE_TYPES, bag)
    msgtype = kinds[topic][0]
    rclpy.init()
    node = rclpy.create_node('timesformer_bag_play')
    types = rclpy_types()
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE) if reliable \
        else qos_profile_sensor_data
    cls = Image if msgtype.endswith('/Image') else CompressedImage
    publisher = node.create_publisher(cls, out_topic or topic, qos)
    clock_pub = node.create_publisher(Clock, '/clock', 10) if clock else None
    published = 0
    try:
        # Give subscribers a moment to match before the first frame (a replay must not lose
        # its start to discovery): wait until one is there, at most 10 s.
        deadline = time.monotonic() + 10.0
        while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        while True:
            first_bag = first_wall = None
            for timestamp, msg in iter_messages(bag, topic, IMAGE_TYPES):
                if first_bag is None:
                    first_bag, first_wall = timestamp, time.monotonic()
                due = first_wall + (timestamp - first_bag) / 1e9 / rate
                while time.monotonic() < due:
                    rclpy.spin_once(node, timeout_sec=max(0.0, due - time.monotonic()))
                if clock_pub is not None:
                    tick = Clock()
                    tick.clock.sec, tick.clock.nanosec = split_ns(timestamp)
                    clock_pub.publish(tick)
                publisher.publish(convert_image(msg, types))
                published += 1
            if not loop:
                break
        # Let reliable subscribers take the last frames before the publisher goes away.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return published


# -- command line -----------------------------------------------------------------------------

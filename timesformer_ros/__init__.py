"""timesformer_ros: TimeSformer video action recognition for ROS 2."""

__version__ = '0.1.0'

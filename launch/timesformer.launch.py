"""Launch the timesformer node: parameters from a YAML file plus explicit overrides.

For example:

    ros2 launch timesformer_ros timesformer.launch.py image:=/camera/image_raw
    config=$(ros2 pkg prefix timesformer_ros)/share/timesformer_ros/config
    ros2 launch timesformer_ros timesformer.launch.py \
        params_file:=$config/kinetics400_gpu.yaml \
        checkpoint:=/opt/models/TimeSformer_divST_8x32_224_K400.pyth
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

# Arguments that override a parameter of the params file when given (non-empty).
OVERRIDES = ('checkpoint', 'device')


def _node(context):
    params_file = LaunchConfiguration('params_file').perform(context)
    if not os.path.isfile(params_file):
        # launch_ros only warns and starts the node on its defaults: refuse instead.
        raise RuntimeError(f'params_file not found: {params_file}')
    overrides = {name: LaunchConfiguration(name).perform(context) for name in OVERRIDES}
    return [Node(
        package='timesformer_ros',
        executable='timesformer_node',
        name='timesformer',
        namespace=LaunchConfiguration('namespace'),
        parameters=[params_file,
                    {k: v for k, v in overrides.items() if v}],
        remappings=[('image', LaunchConfiguration('image')),
                    ('image/compressed', [LaunchConfiguration('image'), '/compressed'])],
        output='screen',
    )]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument(
            'image', default_value='/camera/image_raw',
            description='Input image topic (sensor_msgs/Image; with input_transport '
                        'compressed, IMAGE/compressed is used).'),
        DeclareLaunchArgument(
            'params_file',
            default_value=PathJoinSubstitution(
                [FindPackageShare('timesformer_ros'), 'config', 'timesformer.yaml']),
            description='YAML file with the node parameters.'),
        DeclareLaunchArgument(
            'checkpoint', default_value='',
            description='Checkpoint path (overrides the params file; empty keeps it).'),
        DeclareLaunchArgument(
            'device', default_value='',
            description='auto, cpu, cuda or cuda:N (overrides the params file; empty keeps '
                        'it).'),
        DeclareLaunchArgument(
            'namespace', default_value='', description='Namespace of the node.'),
        OpaqueFunction(function=_node),
    ])

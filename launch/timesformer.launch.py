"""Launch the timesformer node: parameters from a YAML file plus explicit overrides.

For example:

    ros2 launch timesformer_ros timesformer.launch.py image:=/camera/image_raw
    config=$(ros2 pkg prefix timesformer_ros)/share/timesformer_ros/config
    ros2 launch timesformer_ros timesformer.launch.py \
        params_file:=$config/kinetics400_gpu.yaml \
        checkpoint:=/opt/models/TimeSformer_divST_8x32_224_K400.pyth
    # three cameras, one model (README, "Several cameras, one model")
    ros2 launch timesformer_ros timesformer.launch.py cameras:=front,left,rear \
        images:=/front/image_raw,/left/image_raw,/rear/color/image_raw
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

# Arguments that override a parameter of the params file when given (non-empty).
OVERRIDES = ('checkpoint', 'device')


def _split(text: str) -> list:
    return [part.strip() for part in text.split(',') if part.strip()]


def _node(context):
    params_file = LaunchConfiguration('params_file').perform(context)
    if not os.path.isfile(params_file):
        # launch_ros only warns and starts the node on its defaults: refuse instead.
        raise RuntimeError(f'params_file not found: {params_file}')
    overrides = {name: LaunchConfiguration(name).perform(context) for name in OVERRIDES}
    cameras = _split(LaunchConfiguration('cameras').perform(context))
    images = _split(LaunchConfiguration('images').perform(context)) or \
        [f'/{camera}/image_raw' for camera in cameras]
    if len(images) != len(cameras):
        raise RuntimeError(f'images names {len(images)} topics for {len(cameras)} cameras')
    if cameras:
        overrides['cameras'] = cameras
        remappings = [pair for camera, image in zip(cameras, images) for pair in (
            (f'{camera}/image', image), (f'{camera}/image/compressed', image + '/compressed'))]
    else:
        remappings = [('image', LaunchConfiguration('image')),
                      ('image/compressed', [LaunchConfiguration('image'), '/compressed'])]
    return [Node(
        package='timesformer_ros',
        executable='timesformer_node',
        name='timesformer',
        namespace=LaunchConfiguration('namespace'),
        parameters=[params_file,
                    {k: v for k, v in overrides.items() if v}],
        remappings=remappings,
        output='screen',
    )]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument(
            'image', default_value='/camera/image_raw',
            description='Input image topic (sensor_msgs/Image; with input_transport '
                        'compressed, IMAGE/compressed is used).'),
        DeclareLaunchArgument(
            'cameras', default_value='',
            description='Comma-separated camera names served by one model (the cameras '
                        'parameter; `image` is then not used); empty: one unnamed camera on '
                        '`image`.'),
        DeclareLaunchArgument(
            'images', default_value='',
            description='With cameras: their image topics, comma-separated, in the same order '
                        '(empty: /CAMERA/image_raw each).'),
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

from glob import glob

from setuptools import find_packages, setup

package_name = 'timesformer_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    package_data={package_name: ['data/*.json', 'data/*.safetensors']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml')),
    ],
    # ROS convention: Python dependencies come from rosdep/apt or requirements/*.txt, never
    # from install_requires (the ros-* PyPI wheels must not enter a system ROS install).
    install_requires=['setuptools'],
    # colcon test runs pytest (not unittest) for packages that declare it here; recent
    # setuptools drop `tests_require`, so it goes in the `test` extra, as in ros2/examples.
    # 'train': the embedded model's training world (real photographs); 'fleet': many bags on
    # Ray (timesformer_ros.fleet), pinned in requirements/fleet.txt.
    extras_require={'test': ['pytest'], 'train': ['scikit-image'],
                    'fleet': ['ray[train]==2.60.0']},
    zip_safe=False,
    maintainer='timesformer_ros maintainers',
    maintainer_email='maintainers@timesformer-ros.invalid',
    description='TimeSformer video action recognition node for ROS 2',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'timesformer_node = timesformer_ros.entry:node',
            'timesformer_convert = timesformer_ros.convert:convert_main',
            'timesformer_train = timesformer_ros.train:main',
            'timesformer_bench = timesformer_ros.bench:main',
            'timesformer_synthetic_camera = timesformer_ros.entry:camera',
            'timesformer_bag = timesformer_ros.bags.cli:main',
            'timesformer_export = timesformer_ros.export:main',
        ],
    },
)

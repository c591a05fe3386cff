"""Starting the package's programs (`processes`): the installed scripts, the loopback profile.

Tests start the console scripts users start, found where an install puts them; the checkout's
Fast DDS profile is used only where a caller names the checkout.
"""

import os
import sys

import pytest

from conftest import CONSOLE_SCRIPTS, REPO
from timesformer_ros.processes import (
    LOOPBACK_PROFILE, ScriptNotFound, console_command, find_script, keep_dds_on_loopback)


def ament_prefix(root, scripts):
    """Make a ROS prefix as colcon installs the package: its index marker, lib/PACKAGE scripts."""
    marker = root / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'timesformer_ros'
    marker.parent.mkdir(parents=True)
    marker.write_text('')
    (root / 'lib' / 'timesformer_ros').mkdir(parents=True)
    for name in scripts:
        script = root / 'lib' / 'timesformer_ros' / name
        script.write_text('#!/bin/sh\necho hello\n')
        script.chmod(0o755)
    return root


def test_a_colcon_install_is_found_through_ament_prefix_path(tmp_path):
    """Under colcon the scripts are in install/timesformer_ros/lib/timesformer_ros (setup.cfg)."""
    other = tmp_path / 'other'              # a prefix without this package: not searched
    (other / 'lib' / 'timesformer_ros').mkdir(parents=True)
    prefix = ament_prefix(tmp_path / 'install', ['timesformer_colcon_only'])
    env = {'AMENT_PREFIX_PATH': os.pathsep.join([str(other), str(prefix)]), 'PATH': ''}
    assert find_script('timesformer_colcon_only', env) == \
        prefix / 'lib' / 'timesformer_ros' / 'timesformer_colcon_only'
    assert console_command('timesformer_colcon_only', env) == \
        [str(prefix / 'lib' / 'timesformer_ros' / 'timesformer_colcon_only')]


def test_path_is_the_last_place_and_nothing_found_says_where_it_looked(tmp_path):
    ament_prefix(tmp_path / 'bin', ['timesformer_on_path'])
    on_path = tmp_path / 'bin' / 'lib' / 'timesformer_ros'
    assert find_script('timesformer_on_path', {'PATH': str(on_path)}) == \
        on_path / 'timesformer_on_path'
    with pytest.raises(ScriptNotFound) as error:      # never `python -m` in its place
        console_command('timesformer_on_path', {'PATH': '', 'AMENT_PREFIX_PATH': ''})
    message = str(error.value)
    assert 'timesformer_on_path' in message and sys.executable in message
    assert 'AMENT_PREFIX_PATH' in message and 'PATH' in message


def test_the_console_scripts_have_one_source_setup_py():
    """setup.py's entry points are the list; each one's function exists.

    (conftest reads them from setup.py; nothing else lists them.)
    """
    import importlib
    import importlib.metadata
    assert {'timesformer_node', 'timesformer_bag', 'timesformer_synthetic_camera'} <= \
        set(CONSOLE_SCRIPTS)
    for name, target in CONSOLE_SCRIPTS.items():
        module, function = target.split(':')
        assert callable(getattr(importlib.import_module(module), function)), name
    try:                                # an install made from another setup.py is stale
        installed = importlib.metadata.distribution('timesformer_ros').entry_points
    except importlib.metadata.PackageNotFoundError:
        pytest.skip('timesformer_ros is not installed as a distribution here')
    assert {e.name: e.value.replace(' ', '') for e in installed
            if e.group == 'console_scripts'} == CONSOLE_SCRIPTS


def test_the_loopback_profile_comes_from_the_checkout_the_caller_names(tmp_path):
    assert keep_dds_on_loopback({}) == {}                     # installed: nothing is set
    assert keep_dds_on_loopback({}, checkout=tmp_path) == {}  # a checkout without the profile
    env = keep_dds_on_loopback({}, checkout=REPO)
    assert env == {'FASTDDS_DEFAULT_PROFILES_FILE': str(REPO / LOOPBACK_PROFILE),
                   'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}
    kept = {'FASTDDS_DEFAULT_PROFILES_FILE': '/etc/mine.xml'}   # the user's own wins
    assert keep_dds_on_loopback(kept, checkout=REPO)['FASTDDS_DEFAULT_PROFILES_FILE'] == \
        '/etc/mine.xml'

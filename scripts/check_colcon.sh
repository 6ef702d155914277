#!/usr/bin/env bash
# Developer check: build this repository with `colcon build` as a ROS 2 Jazzy workspace would,
# using .venv (the ros-* wheels) as the underlay. colcon is installed into a throwaway venv
# (/tmp/colcon-venv) so that the project's own venv stays as pinned. Not run by CI (~1-2 min).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WS="${WS:-/tmp/lens_ros_colcon_ws}"
[[ -x /tmp/colcon-venv/bin/colcon ]] || { python3 -m venv /tmp/colcon-venv &&
  /tmp/colcon-venv/bin/pip install -q colcon-core==0.21.3 colcon-cmake==0.2.30 colcon-ros==0.5.0 \
    colcon-package-selection colcon-output; }
rm -rf "$WS" && mkdir -p "$WS/src/lens_ros"
(cd "$ROOT" && git ls-files | tar -cf - -T -) | (cd "$WS/src/lens_ros" && tar -xf -)
cd "$WS"
export AMENT_PREFIX_PATH="$ROOT/.venv" CMAKE_PREFIX_PATH="$ROOT/.venv"
/tmp/colcon-venv/bin/colcon build --cmake-args -DPython3_EXECUTABLE="$ROOT/.venv/bin/python" -DBUILD_TESTING=OFF
SITE=$(echo "$WS"/install/lens_ros/lib/python3*/site-packages)
ls "$SITE/lens_ros" | head -50
# Import the colcon-installed package (generated messages + our sources in one directory;
# the venv supplies rclpy, torch, ...).
cd / && PYTHONPATH="$SITE" LD_LIBRARY_PATH="$WS/install/lens_ros/lib" "$ROOT/.venv/bin/python" -c '
import lens_ros, lens_ros.core
from lens_ros.msg import LensResult
print("colcon install ok:", lens_ros.__file__, LensResult.STATUS_TRACKED)'

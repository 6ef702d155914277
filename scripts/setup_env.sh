#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) on a fresh machine.
#
#   scripts/setup_env.sh            # what `make test` and `make demo` call first
#
# Idempotent: every step keeps a stamp keyed on its inputs, so a re-run with nothing changed
# only checks the stamps and the imports (a few seconds). Every pip call goes through
# requirements/constraints.txt (torch==2.13.0 CPU, ROS 2 Jazzy). Exits non-zero with a
# message naming the failed step.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
CONSTRAINTS="$ROOT/requirements/constraints.txt"
STAMPS="$VENV/.lens_stamps"
T0=$(date +%s)

step() { printf '\n[setup] %s\n' "$*"; }
fail() { printf '\n[setup] FAILED: %s\n' "$*" >&2; exit 1; }
trap 'fail "command on line $LINENO exited with $? (see output above)"' ERR

hash_of() { cat "$@" | sha256sum | cut -c1-16; }
stamp_ok() { [[ -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]; }
stamp_set() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }

# 0. System tools: cmake + a C/C++ compiler + Python headers build the messages.
for tool in cmake gcc g++; do
  command -v "$tool" >/dev/null || fail "$tool is missing; install it (Debian: apt-get install -y cmake build-essential)"
done
# espeak-ng synthesises the spoken-command tests' extra clips, lens-say and the speech benchmark;
# installed when apt-get can (root, CI); without it those tests skip and say why.
if ! command -v espeak-ng >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    step "installing espeak-ng (apt-get)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null; } \
      || printf '[setup] warning: apt-get install espeak-ng failed; speech tests that synthesise skip\n' >&2
  else
    printf '[setup] note: espeak-ng missing (apt-get install espeak-ng); speech tests that synthesise skip\n' >&2
  fi
fi
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
  || fail "Python 3.11 is required (the ROS 2 Jazzy wheels are cp311); found $("$PYTHON" --version)"

# 0b. Chromium (the lens-console test drives it headless) and tmux (the interactive lens-ask
# test): installed only when missing and apt-get is there; without them those tests skip.
if ! command -v chromium >/dev/null || ! command -v tmux >/dev/null; then
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo -n"
  if command -v apt-get >/dev/null && { [[ -z "$SUDO" ]] || sudo -n true 2>/dev/null; }; then
    step "installing chromium and tmux (apt-get; first time: ~1 min)"
    { $SUDO apt-get update -q && $SUDO apt-get install -y -q chromium tmux; } > /tmp/lens_apt.log 2>&1 \
      || printf '[setup] warning: apt-get install chromium tmux failed (see /tmp/lens_apt.log); the console and tmux tests will skip\n'
  else
    printf '[setup] note: chromium or tmux is missing and apt-get is not usable; the console and tmux tests will skip\n'
  fi
fi

# 1. The venv itself.
if [[ ! -x "$VENV/bin/python" ]]; then
  step "creating $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
# pip install, without the noise of index locations that a local pip config may name but lack.
pipi() { "${PIP[@]}" install -q "$@" 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }; }

# 2. Python packages (stamp = hash of the requirement files).
REQ_HASH=$(hash_of requirements/*.txt)
if ! stamp_ok requirements "$REQ_HASH"; then
  step "installing pinned requirements (first time: ~3 min)"
  pipi -U 'pip==26.3' -c "$CONSTRAINTS" || pipi -U pip
  # torch first: the CPU build pinned by the constraints file.
  pipi -c "$CONSTRAINTS" torch==2.13.0
  pipi -c "$CONSTRAINTS" -r requirements/ml.txt -r requirements/ros.txt -r requirements/tools.txt
  # sam2 declares torchvision and tries to build a CUDA extension: neither is needed by our code.
  SAM2_BUILD_CUDA=0 pipi -c "$CONSTRAINTS" --no-deps --no-build-isolation sam2==1.1.0
  stamp_set requirements "$REQ_HASH"
fi
if "${PIP[@]}" list 2>/dev/null | grep -iE '^torchvision ' ; then
  fail "torchvision found in $VENV (nothing here needs it, and PyPI's build breaks beside torch 2.13.0); recreate the venv: rm -rf $VENV"
fi
# nvidia-*/triton belong to a CUDA build of torch; beside the CPU build they were pulled by mistake
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.version.cuda else 1)' 2>/dev/null \
   && "${PIP[@]}" list 2>/dev/null | grep -iE '^(nvidia-|triton)' ; then
  fail "CUDA packages beside the CPU build of torch in $VENV (listed above); recreate the venv: rm -rf $VENV"
fi
TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__)')
[[ "$TORCH_VERSION" == 2.13.0* ]] || fail "torch $TORCH_VERSION in $VENV, expected 2.13.0 (the CPU build, or the CUDA build of the same version)"

# 3. Messages and actions (rosidl, CMake), generated into the source tree (git-ignored).
MSG_HASH=$(hash_of CMakeLists.txt package.xml msg/*.msg action/*.action tools/fix_ros_wheel_cmake.py)
if ! stamp_ok messages "$MSG_HASH" || [[ ! -f lens_ros/msg/__init__.py ]]; then
  step "building messages with rosidl (first time: ~1-2 min)"
  "$PY" tools/fix_ros_wheel_cmake.py
  SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
  mkdir -p build
  cmake -S . -B build/ros -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" \
        -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DLENS_INSTALL_PYTHON=OFF > build/cmake.log 2>&1 \
        || { cat build/cmake.log; fail "cmake configure of the messages"; }
  cmake --build build/ros -j"$(nproc)" > build/build.log 2>&1 || { tail -50 build/build.log; fail "message build"; }
  cmake --install build/ros > build/install.log 2>&1 || { tail -50 build/install.log; fail "message install"; }
  # Move the generated Python modules beside our sources (one import package `lens_ros`, found
  # through the editable install from any directory) and drop the generator's own copy.
  rm -rf lens_ros/msg lens_ros/action lens_ros/lens_ros_s__rosidl_typesupport_*.so
  mv "$SITE/lens_ros/msg" "$SITE/lens_ros/action" lens_ros/
  mv "$SITE"/lens_ros/lens_ros_s__rosidl_typesupport_*.so lens_ros/
  rm -rf "$SITE/lens_ros" "$SITE"/lens_ros-*.egg-info
  stamp_set messages "$MSG_HASH"
fi

# 4. lens_ros itself, editable (code changes need no reinstall).
PKG_HASH=$(hash_of setup.py)
if ! stamp_ok package "$PKG_HASH"; then
  step "installing lens_ros (editable)"
  pipi -c "$CONSTRAINTS" --no-deps --no-build-isolation -e .
  stamp_set package "$PKG_HASH"
fi

# 5. Check from outside the repository that everything imports.
(cd / && AMENT_PREFIX_PATH="$VENV" "$PY" -c '
from importlib.metadata import version
import rclpy, torch
from lens_ros.msg import LensResult
from lens_ros.action import Segment
import lens_ros
pins = ", ".join(f"{p} {version(p)}" for p in ("transformers", "trl", "sam2", "rosbags", "ros-rclpy"))
print(f"[setup] ok: torch {torch.__version__}, {pins}, "
      f"lens_ros {lens_ros.__version__} with messages from {LensResult.__module__}")
') || fail "import check (see the traceback above)"
SIZE=$(du -sh "$VENV" 2>/dev/null | cut -f1)
echo "[setup] venv $VENV: $SIZE; setup took $(( $(date +%s) - T0 )) s"

#!/usr/bin/env bash
# A terminal session of `lens-ask` in interactive mode, driven by tmux and captured as text.
#
#   scripts/demo_lens_ask_tmux.sh [OUT.txt]     # prints the captured pane (and writes OUT.txt)
#
# Starts lens_node on the demo model and `lens-camera --synthetic` in the background, runs
# `lens-ask` (no command: the interactive prompt) in a detached tmux session, types two
# commands, recalls the first with the Up arrow (readline history), asks for `:status`, and
# prints what the terminal showed. Needs tmux (apt-get install tmux). DDS stays on this host.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PY:-$ROOT/.venv/bin/python}"
OUT="${1:-}"
command -v tmux >/dev/null || { echo "tmux is missing: apt-get install -y tmux" >&2; exit 2; }
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((RANDOM % 100 + 1))}" ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export FASTRTPS_DEFAULT_PROFILES_FILE="$ROOT/config/lens_fastdds.xml" PYTHONUNBUFFERED=1
LOGS="$(mktemp -d)"
SOCK="lens_ask_demo_$$"

"$PY" -m lens_ros.ros.lens_node --ros-args -p model_path:=models/lens-demo \
  -p reasoning:=true -p max_new_tokens:=48 >"$LOGS/node.log" 2>&1 &
NODE=$!
"$PY" -m lens_ros.ros.camera --synthetic --rate 5 >"$LOGS/camera.log" 2>&1 &
CAMERA=$!
cleanup() {
  tmux -L "$SOCK" kill-server 2>/dev/null || true
  kill -INT "$CAMERA" "$NODE" 2>/dev/null || true
  wait "$CAMERA" "$NODE" 2>/dev/null || true
  rm -rf "$LOGS"
}
trap cleanup EXIT

pane() { tmux -L "$SOCK" capture-pane -p -t ask -S -200; }
wait_for() {  # wait_for REGEX COUNT SECONDS: until the pane shows REGEX COUNT times
  local end=$((SECONDS + $3))
  while (( $(pane | grep -cE "$1" || true) < $2 )); do
    (( SECONDS < end )) || { echo "timed out waiting for '$1'" >&2; pane >&2; exit 1; }
    sleep 0.3
  done
}

tmux -L "$SOCK" new-session -d -x 110 -y 60 -s ask \
  "HOME=$LOGS $PY -m lens_ros.ros.ask; sleep 30"
wait_for '^lens>' 1 60
end=$((SECONDS + 90))  # the node has loaded the model and receives the camera's frames
until "$PY" -m lens_ros.ros.ask --status --timeout 5 2>/dev/null | grep -qE 'frames_received +[1-9]'; do
  (( SECONDS < end )) || { echo "lens_node received no frame" >&2; cat "$LOGS"/*.log >&2; exit 1; }
  sleep 1
done
tmux -L "$SOCK" send-keys -t ask "the red object" Enter
wait_for '^status ' 1 60
tmux -L "$SOCK" send-keys -t ask "the striped book" Enter
wait_for '^status ' 2 60
tmux -L "$SOCK" send-keys -t ask Up Up Enter          # history: "the red object" again
wait_for '^status ' 3 60
tmux -L "$SOCK" send-keys -t ask ":status" Enter
wait_for '^  results ' 1 60
tmux -L "$SOCK" send-keys -t ask C-d
sleep 0.5
trim() { sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'; }  # drop the pane's empty bottom lines
if [[ -n "$OUT" ]]; then pane | trim | tee "$OUT"; else pane | trim; fi

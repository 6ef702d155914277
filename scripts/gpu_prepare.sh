#!/usr/bin/env bash
# Build .whl/: the Python packages scripts/gpu_run.sh installs on the GPU machine, which has
# Python 3.12, PyTorch (CUDA), transformers, accelerate, numpy, pandas, pyarrow, pytest... but no
# sam2, TRL or hydra, other versions of transformers/tokenizers/huggingface_hub than ours, and no
# package index. Needs a reachable package index (pip download) and the project venv (to build
# sam2 without its CUDA extension). Versions are the pins of requirements/ml.txt.
#   bash scripts/gpu_prepare.sh           (VENV=.venv by default; prints the total size)
# The wheels travel with the working tree (64 MiB in all with the tree): keep the list short.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-${VENV:-.venv}/bin/python}
DEST=.whl
mkdir -p "$DEST"
pin() { { grep -ihE "^$1==" requirements/ml.txt requirements/tools.txt || true; } | head -n 1; }

# binary wheels for CPython 3.12 on x86-64 Linux, without their dependencies (named below)
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64 manylinux_2_24_x86_64 manylinux_2_31_x86_64; do
    PLATFORMS+=(--platform "$p")
done
BINARY=(transformers tokenizers huggingface_hub trl datasets peft hydra-core omegaconf pycocotools)
# dependencies the GPU machine lacks or has too old (datasets: dill, multiprocess;
# huggingface_hub 2: httpx2, httpcore2, truststore, hf-xet >= 1.6, click >= 8.4.2), at the
# versions of the project venv
EXTRA=("dill==0.4.0" "multiprocess==0.70.18" "httpx2==2.17.0" "httpcore2==2.17.0"
       "truststore==0.10.5" "hf-xet==1.8.0" "click==8.5.1")
specs=()
for name in "${BINARY[@]}"; do
    v=$(pin "$name")
    [ -n "$v" ] || { echo "no pin for $name in requirements/*.txt" >&2; exit 2; }
    specs+=("$v")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d "$DEST" "${specs[@]}" "${EXTRA[@]}"

# source-only packages: sam2 without its CUDA extension (SAM2_BUILD_CUDA=0; pure Python, built
# against this venv's torch), iopath (sam2's file I/O) and antlr4 (omegaconf's parser runtime)
SAM2=$(pin sam2); SAM2=${SAM2:-sam2==1.1.0}
SAM2_BUILD_CUDA=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$DEST" "$SAM2"
"$PY" -m pip wheel -q --no-deps -w "$DEST" "$(pin iopath)" "antlr4-python3-runtime==4.9.3"

# DeepSpeed for the ZeRO-3 step (scripts/gpu/zero3_grpo.sh): built without its ops (pure Python;
# ops JIT-compile on the GPU machine when used), at the pin of requirements/gpu.txt, plus what
# the GPU image lacks of its requirements (hjson, pydantic 2 and its parts, at the project
# venv's versions; einops, msgpack, ninja, py-cpuinfo, psutil, tqdm, nvidia-ml-py are there)
gpin() { grep -ihE "^$1==" requirements/gpu.txt | head -n 1; }
DS_BUILD_OPS=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$DEST" "$(gpin deepspeed)" \
    "$(gpin hjson)"
venv_pin() { "$PY" -c "import importlib.metadata as m; print('$1==' + m.version('$1'))"; }
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d "$DEST" "$(venv_pin pydantic)" "$(venv_pin pydantic_core)" \
    "$(venv_pin annotated-types)" "$(venv_pin typing-inspection)"

ls -l "$DEST"
total=$(du -cb "$DEST"/*.whl | tail -n 1 | cut -f1)
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | grep total$ | awk '{s += $1} END {print s}')
echo "wheels: $(( total / 1024 / 1024 )) MiB; tracked tree: $(( tree / 1024 / 1024 )) MiB;" \
     "the limit for both together is 64 MiB"
[ $(( total + tree )) -lt $(( 60 * 1024 * 1024 )) ] || { echo "too large to travel" >&2; exit 1; }

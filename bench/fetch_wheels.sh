#!/usr/bin/env bash
# Fetch the wheels bench/gpu.sh installs on a CUDA machine that cannot reach PyPI (run here, where pip can).
#
#   bench/fetch_wheels.sh [--all] [DIR]   # default DIR: bench/wheels (git-ignored)
#
# The target is the usual CUDA image: CPython 3.12 on x86-64 Linux with torch, transformers, accelerate,
# numpy, grpcio, httpx, protobuf, pyarrow, requests ... already there. Fetched: what it lacks for the steps
# of bench/gpu.sh (Qdrant Edge, bitsandbytes, num2words for SmolVLM's processor: about 58 MB, which with
# the repository stays under a device call's 64 MiB); --all adds qdrant-client and langchain-core with the
# dependencies the image lacks (about 11 MB more). Versions are pinned to the ones this project is tested
# with; PY_VERSION overrides the target's Python.
set -euo pipefail
cd "$(dirname "$0")/.."
ALL=0
if [[ "${1:-}" == "--all" ]]; then ALL=1; shift; fi
DIR=${1:-bench/wheels}
PY=${PYTHON:-.venv/bin/python}
PY_VERSION=${PY_VERSION:-3.12}
mkdir -p "$DIR"
packages=(qdrant-edge-py==0.9.0 bitsandbytes==0.50.2 num2words==0.5.14)
if [[ $ALL == 1 ]]; then
  packages+=(qdrant-client==1.20.0 portalocker pydantic pydantic-core annotated-types typing-inspection
             langchain-core==1.8.3 jsonpatch jsonpointer langsmith tenacity orjson requests-toolbelt zstandard uuid-utils)
fi
platforms=()
for n in 17 24 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
for p in "${packages[@]}"; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
    "${platforms[@]}" -d "$DIR" "$p" || echo "could not fetch $p" >&2
done
ls -la "$DIR"
du -sh "$DIR"

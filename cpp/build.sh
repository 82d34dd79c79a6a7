#!/usr/bin/env bash
# Builds cpp/score_artifact against the libtorch inside the installed torch wheel (headers and
# shared libraries ship with it; no separate libtorch download). Usage:
#   bash cpp/build.sh [python]        (default: .venv/bin/python, else python3)
# Writes cpp/build/score_artifact. Needs a C++20 compiler (torch 2.13 headers) (g++ or clang++).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${1:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$here/../.venv/bin/python" ]]; then python="$here/../.venv/bin/python"; else python=python3; fi
fi
torch_dir="$("$python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
abi="$("$python" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')"
cxx="${CXX:-g++}"
mkdir -p "$here/build"
"$cxx" -O2 -std=c++20 -D_GLIBCXX_USE_CXX11_ABI="$abi" \
  -I"$torch_dir/include" -I"$torch_dir/include/torch/csrc/api/include" \
  "$here/score_artifact.cpp" -o "$here/build/score_artifact" \
  -L"$torch_dir/lib" -Wl,-rpath,"$torch_dir/lib" -ltorch -ltorch_cpu -lc10
echo "built $here/build/score_artifact"

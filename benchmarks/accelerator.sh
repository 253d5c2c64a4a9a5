#!/usr/bin/env bash
# The accelerator benchmark, in one go (about 10 minutes on one GPU): the K in {1,4,16,64}
# sweep of the BERT-tiny outer step, JAX and the PyTorch reference interleaved on both
# objectives at K=16, then the MiniLM and BERT-base shapes at K=4. JSON and the printed
# markdown land in $OUT (default benchmarks/out). Needs jax with CUDA (or a TPU) and the torch
# extra with a CUDA build; it installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/out}"
PY="${PY:-.venv/bin/python}"
mkdir -p "$OUT"
"$PY" -c 'import jax; print("jax", jax.__version__, jax.devices())' | tee "$OUT/devices.txt"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda:", torch.cuda.is_available())' \
  | tee -a "$OUT/devices.txt"

run() {  # name, then bench flags
  local name="$1"; shift
  timeout 300 "$PY" -m sdm_jax.bench "$@" --json "$OUT/$name.json" | tee "$OUT/$name.md"
}

run sweep_bert_tiny --model bert-tiny --inner-steps 1 4 16 64 --remat none sqrt
run compare_k16 --compare-torch --torch-device cuda --model bert-tiny --inner-steps 16 \
  --objectives paper fixed_lr --pairs 3 --remat none
run compare_minilm_k4 --compare-torch --torch-device cuda --model minilm --inner-steps 4 \
  --objectives paper --pairs 3 --remat none
run compare_bert_base_k4 --compare-torch --torch-device cuda --model bert-base --inner-steps 4 \
  --objectives paper --pairs 3 --remat sqrt
echo "results in $OUT"

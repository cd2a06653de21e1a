#!/usr/bin/env bash
# The GPU rows of docs/performance.md, in one command (under 10 minutes on one GPU):
#   scripts/gpu_benchmark.sh [rows_file]        # default: gpu_rows.md in the current directory
# benchmark_step.py on the three MNIST configs with trainer=gpu and trainer=gpu_bf16, each
# with and without model.compile=true (data on the device, wall time), then benchmark_data.py
# on the device. Without a GPU the GPU rows are skipped and each script runs once, briefly, on
# CPU, so that CI checks that they still work.
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-gpu_rows.md}"
python="${PYTHON:-python}"
export PYTHONPATH="${PWD}/src${PYTHONPATH:+:${PYTHONPATH}}"

if "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  gpu=$("$python" -c 'import torch; print(torch.cuda.get_device_name(0))')
  {
    echo "## GPU: ${gpu} ($(date -u +%Y-%m-%d), torch $("$python" -c 'import torch; print(torch.__version__)'))"
    echo
    echo '`scripts/gpu_benchmark.sh`: ganzoo / hand loop per batch, wall time, data on the device.'
    echo
  } > "$rows"
  for trainer in gpu gpu_bf16; do
    for compile in "" "--compile"; do
      echo "### trainer=${trainer}${compile:+, model.compile=true}" >> "$rows"
      "$python" scripts/benchmark_step.py --trainer "$trainer" $compile --repeats 2 --seconds 1.5 \
        --configs gan_mnist_infogan alphagan_mnist vaegan_mnist_conv | tee -a "$rows"
      echo >> "$rows"
    done
  done
  echo "### data path on the GPU" >> "$rows"
  "$python" scripts/benchmark_data.py --device cuda --repeats 3 | tee -a "$rows"
else
  echo "gpu_benchmark.sh: no GPU here (torch.cuda.is_available() is false): GPU rows skipped;" \
       "each benchmark runs once, briefly, on CPU." | tee "$rows"
  "$python" scripts/benchmark_step.py --configs gan_ring --repeats 1 --seconds 0.5 | tee -a "$rows"
  "$python" scripts/benchmark_data.py --repeats 1 --batches 10 --workers 0 --cifar-images 1000 \
    | tee -a "$rows"
fi
echo "rows written to ${rows}"

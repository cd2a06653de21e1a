#!/usr/bin/env bash
# README pictures from a short real-MNIST run, made by ganzoo-sample:
#
#   scripts/readme_pictures.sh <name> <ganzoo-train overrides...>
#
# trains one run into $RUN_DIR (default logs/readme/<name>; an existing checkpoint there is
# reused), then writes docs/<name>_samples.png (64 samples),
# docs/<name>_interpolation.png (spherical paths between prior samples) and, for families with
# an encoder, docs/<name>_reconstructions.png (held-out test digits, rows of 8, each row followed
# by its reconstructions). MNIST is read from $GANZOO_DATA_DIR (default ../shared/data).
set -euo pipefail

name=$1
shift
python=${PYTHON:-python}
run=${RUN_DIR:-logs/readme/$name}
data_dir=${GANZOO_DATA_DIR:-../shared/data}

if [[ ! -f $run/checkpoints/last.ckpt ]]; then
  $python -m ganzoo.train "$@" paths.data_dir="$data_dir" hydra.run.dir="$run"
fi

sample() { $python -m ganzoo.sample ckpt_path="$run/checkpoints/last.ckpt" out="$run/inspection" seed=0 "$@"; }
sample mode=samples n=64
sample mode=interpolation interpolation.methods=[slerp] interpolation.pairs=6 interpolation.steps=10
cp "$run/inspection/samples.png" "docs/${name}_samples.png"
cp "$run/inspection/interpolation_slerp.png" "docs/${name}_interpolation.png"
if sample mode=reconstructions n=32; then
  cp "$run/inspection/reconstructions.png" "docs/${name}_reconstructions.png"
fi
ls -l docs/"${name}"_*.png

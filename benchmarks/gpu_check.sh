#!/usr/bin/env bash
# The GPU check: one script, under 10 minutes on one GPU. It installs neurolake from the lock
# (beside the machine's own torch where one is installed; without a package index, from the
# bundle of benchmarks/gpu_bundle.py in .gpu), then runs the ingest benchmark with
# wav2vec 2.0 base and large (random weights, the real architectures), every encoder layer
# captured as float16, and prints for each: frames and audio hours per second per GPU, the ratio
# to the bare forward on the same GPU, the activations written per second, and the time 960 h of
# LibriSpeech would take (target: under 1 hour for base on one H100-class GPU, ratio >= 0.9).
# First the pipeline around a free forward (the stand-in model), then base twice: one model
# actor on the GPU, then two sharing it (`--actors 2`: two processes, each with its own
# interpreter lock, so one part's labels and writes run while the other's forward has the GPU).
#
#   bash benchmarks/gpu_check.sh [--quick]     # --quick: fewer utterances (a smoke run, ~2 min)
#
# On a machine that cannot reach a package index, first run `python benchmarks/gpu_bundle.py`
# where one is reachable, and carry its .gpu folder with the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1

python=python3
bundle=.gpu/site-py$(python3 -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")').tar.xz
if [ -x .venv/bin/python ]; then
  python=.venv/bin/python
elif [ -f "$bundle" ]; then
  # A machine without a package index: the packages of benchmarks/gpu_bundle.py (made where the
  # index is reachable, carried in .gpu) beside the image's own CUDA PyTorch, on PYTHONPATH;
  # Ray's workers and the benchmark's processes inherit it.
  mkdir -p .gpu/site
  tar -xJf "$bundle" -C .gpu/site
  export PYTHONPATH="$PWD/.gpu/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
elif ls .gpu/site-py*.tar.xz >/dev/null 2>&1; then
  echo "gpu_check: .gpu holds $(ls .gpu/site-py*.tar.xz), not $bundle for this machine's $(python3 --version);" \
    "make it with: python benchmarks/gpu_bundle.py --python $(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')" >&2
  exit 2
else
  # --system-site-packages: a GPU image's CUDA torch (2.11.0+cu130) satisfies the torch pin, so
  # it is not downloaded again (this needs the package index).
  python3 -m venv --system-site-packages .venv
  .venv/bin/pip install -q -c constraints.txt -e .
  python=.venv/bin/python
fi
# The stack and the GPU (not `neurolake doctor`: its numba and Ray checks cost half a minute).
$python -c 'import torch, ray, zarr, numba, neurolake; print(f"torch {torch.__version__} (CUDA {torch.version.cuda}, GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}), ray {ray.__version__}, zarr {zarr.__version__}, numba {numba.__version__}")'
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi: running on CPU"

if [ "$quick" = 1 ]; then
  base=(--utterances 40 --repeat 2)
  large=(--utterances 20 --repeat 2)
  standin=(--utterances 40 --repeat 5)
else
  base=(--utterances 400 --repeat 8)
  large=(--utterances 200 --repeat 4)
  standin=(--utterances 200 --repeat 20)
fi
# The pipeline's own ceiling on this machine: wav2vec 2.0 base's outputs from table look-ups on
# the GPU (benchmarks/standin_model.py), so the forward costs almost nothing and what remains is
# the capture, the copies to the host, labels, compression and writes on this machine's CPUs.
echo "== stand-in for wav2vec 2.0 base (the pipeline around a free forward), one actor, then two =="
$python benchmarks/ingest_throughput.py --model standin --actors 1 "${standin[@]}"
$python benchmarks/ingest_throughput.py --model standin --actors 2 "${standin[@]}"
echo "== wav2vec 2.0 base, all 12 encoder layers =="
$python benchmarks/ingest_throughput.py --model wav2vec2-base --layers 'encoder.transformer.layers.?,encoder.transformer.layers.??' --max-batch 32 "${base[@]}"
echo "== wav2vec 2.0 base, all 12 encoder layers, two actors sharing the GPU =="
$python benchmarks/ingest_throughput.py --model wav2vec2-base --layers 'encoder.transformer.layers.?,encoder.transformer.layers.??' --max-batch 32 --actors 2 "${base[@]}"
echo "== wav2vec 2.0 large, all 24 encoder layers =="
$python benchmarks/ingest_throughput.py --model wav2vec2-large --layers 'encoder.transformer.layers.?,encoder.transformer.layers.??' --max-batch 16 "${large[@]}"

#!/usr/bin/env bash
# Every GPU check in one go, most important first, within a wall-clock budget:
#   bash benchmarks/gpu_session.sh OUT_DIR [BUDGET_SECONDS=520]
# Writes summary.log and one log per step into OUT_DIR (tests, lrnn_layer, paper, batched, tune, quality,
# projector, compile).
# Each step gets at most its own limit and what is left of the budget, so a slow step cannot starve the
# machine's lease; a step cut short leaves its partial log. Run from the repository root on a CUDA machine
# whose python3 has torch; a .whl/ folder of extra wheels (pydicom, pydicom-data) is installed first if present.
set -u
out=${1:?usage: gpu_session.sh OUT_DIR [BUDGET_SECONDS]}
budget=${2:-520}
mkdir -p "$out"
start=$(date +%s)
export PYTHONUNBUFFERED=1
# The repository root is the package `sparsect`; a bare device machine gets it through a link named so.
mkdir -p /tmp/src && ln -sfn "$PWD" /tmp/src/sparsect
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:/tmp/src
else
    export PYTHONPATH=/tmp/src
fi

step() {  # step NAME LIMIT_SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    local left=$((budget - ($(date +%s) - start)))
    if [ "$left" -lt 15 ]; then echo "== $name skipped: budget spent" | tee -a "$out/summary.log"; return; fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (limit ${limit} s) $*" | tee -a "$out/summary.log"
    local t0=$(date +%s)
    timeout -k 5 "$limit" "$@" >"$out/$name.log" 2>&1
    echo "== $name rc=$? in $(( $(date +%s) - t0 )) s" | tee -a "$out/summary.log"
    tail -n 25 "$out/$name.log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, pydicom, skimage; print('torch', torch.__version__, 'cuda', torch.version.cuda,
torch.cuda.get_device_name(0), 'pydicom', pydicom.__version__, 'skimage', skimage.__version__)"; } 2>&1 | tee -a "$out/summary.log"
step tests 150 bash -c "python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_operators.py \
    tests/test_classical.py tests/test_models.py tests/test_fit.py; \
    python3 -m pytest -q -p no:cacheprovider tests/test_models.py -k triton"
step lrnn_layer 60 python3 benchmarks/lrnn_layer.py --device cuda --size 256 --repeats 10
step paper 300 python3 benchmarks/quality.py --sizes 256 --views 100 --photons 0 --samples head_693 \
    --methods fbp tv lrnn+ramp_loss+fbp_init wire+ramp_loss+fbp_init lrnn wire --preset paper --device cuda
step batched 70 python3 benchmarks/batched_fit.py --device cuda --size 128 --batches 1 4 16 --iterations 200
step tune 150 python3 benchmarks/tune_preset.py --model lrnn --preset paper --size 256 --views 100 \
    --iterations 5000 --device cuda --no-base --grid w0=30 lr=1e-3
step quality 600 python3 benchmarks/quality.py --sizes 256 --views 30 60 --photons 0 --samples head_693 \
    --methods tv lrnn+ensemble+ramp_loss+fbp_init+band_blend wire+ensemble+ramp_loss+fbp_init+band_blend --preset paper --device cuda
step projector 40 python3 benchmarks/projector.py --sizes 256 512 --batches 1 16 --skip-skimage --repeat 5
step compile 90 python3 benchmarks/lrnn_layer.py --device cuda --size 256 --repeats 10 --presets paper --compile
echo "total $(( $(date +%s) - start )) s" | tee -a "$out/summary.log"

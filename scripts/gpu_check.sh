#!/usr/bin/env bash
# Every GPU check in one go (about 5 minutes on one GPU), on a machine with a CUDA build of
# PyTorch but without TorchRec or Ray: the GMF step, embedding step (n up to 10M) and serving
# benchmarks with --device cuda, then one epoch of local GMF (FE and MGQE) with
# train.device=cuda on real MovieLens-1M. Prints every ratio; figures go in the README.
#
#   scripts/gpu_check.sh [PREPARED_DIR]
#
# PREPARED_DIR (default prepared/ml1m) is MovieLens-1M prepared here by `make demo` (prepare
# needs Ray, which the GPU machine lacks) and carried along. Python packages the machine lacks
# (pyarrow, safetensors) may be carried as wheels in .whl/ (see the device notes); they are
# installed into /tmp/site first. The C search kernel is not built there: on CUDA tensors MGQE
# searches with torch ops anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
prepared=${1:-prepared/ml1m}
python=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1
"$python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__, '|', \
__import__('datetime').date.today())"

"$python" -m benchmarks.gmf_step --device cuda --steps 100
"$python" -m benchmarks.embedding_step --device cuda --steps 20 --sizes 3707,1000000,10000000
"$python" -m benchmarks.serving --device cuda

# One local training epoch each on the prepared MovieLens-1M (its stats.json says whether it
# is the real file; the trainer prints a NOTE when it is generated).
for kind in fe mgqe; do
  "$python" -m mgqe_dist.cli train "jobs/ml1m_gmf_${kind}.toml" \
    --set train.device=cuda --set train.epochs=1 --set "data.prepared_dir=$prepared" \
    --set "output_dir=/tmp/runs/gpu_${kind}"
done

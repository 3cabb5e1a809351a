#!/usr/bin/env bash
# The demo behind `make demo`: prepare MovieLens-1M, train GMF with full embeddings (FE) and
# with MGQE side by side (one process and one thread each, so both cores work), print both
# results beside the paper's, export the MGQE model's serving artifact.
#
# To fit in 5 minutes on a 2-core machine the demo trains DEMO_EPOCHS epochs (default 6) of
# the jobs' 20; the best-validation epoch is kept either way. DEMO_EPOCHS=20 runs the jobs'
# full budget (about 13 minutes: an MGQE epoch takes about 38 s on one core, FE about 12 s).
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${DEMO_EPOCHS:-6}
cli=.venv/bin/mgqe-dist

"$cli" prepare jobs/ml1m_gmf_fe.toml
pids=()
for kind in fe mgqe; do
  # Each line prefixed with its run, so the two progress streams stay readable.
  OMP_NUM_THREADS=1 "$cli" train "jobs/ml1m_gmf_${kind}.toml" --set "train.epochs=${epochs}" \
    > >(sed -u "s/^/[${kind}] /") 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=$?
done
if [[ $status -ne 0 ]]; then
  echo "demo: a training run failed (exit $status); see its lines above" >&2
  exit "$status"
fi
.venv/bin/python scripts/compare_runs.py runs/ml1m_gmf_fe runs/ml1m_gmf_mgqe
"$cli" export runs/ml1m_gmf_mgqe --out artifacts/ml1m_gmf_mgqe

# Entry points; the README's first two commands are `make demo` and `make test`.
.PHONY: setup demo test lint

setup:
	bash scripts/setup_env.sh

# Prepare MovieLens-1M (or a generated MovieLens-shaped log if it is absent), then train GMF
# with full embeddings and with MGQE, print both results side by side, and export the MGQE
# model's serving artifact.
demo: setup
	.venv/bin/mgqe-dist prepare jobs/ml1m_gmf_fe.toml
	.venv/bin/mgqe-dist train jobs/ml1m_gmf_fe.toml
	.venv/bin/mgqe-dist train jobs/ml1m_gmf_mgqe.toml
	.venv/bin/python scripts/compare_runs.py runs/ml1m_gmf_fe runs/ml1m_gmf_mgqe
	.venv/bin/mgqe-dist export runs/ml1m_gmf_mgqe --out artifacts/ml1m_gmf_mgqe

test: setup lint
	.venv/bin/python -m pytest -q

lint:
	.venv/bin/ruff check mgqe_dist data_pipeline tests benchmarks scripts
	.venv/bin/mypy

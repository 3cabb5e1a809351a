# Entry points; the README's first two commands are `make demo` and `make test`.
.PHONY: setup demo test lint

setup:
	bash scripts/setup_env.sh

# Prepare MovieLens-1M (or a generated stand-in if it is absent), train GMF with full
# embeddings and with MGQE side by side, print both beside the paper's values, and export the
# MGQE model's serving artifact (scripts/demo.sh; DEMO_EPOCHS=20 for the jobs' full budget).
demo: setup
	bash scripts/demo.sh

test: setup lint
	.venv/bin/python -m pytest -q

lint:
	.venv/bin/ruff check mgqe_dist data_pipeline tests benchmarks scripts
	.venv/bin/mypy

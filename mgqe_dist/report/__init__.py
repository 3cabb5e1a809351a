"""`mgqe-dist report EXPERIMENT.toml`: run (or resume) a grid of training jobs and write a
Markdown report with the paper's tables and figures, plus results.json with every run."""

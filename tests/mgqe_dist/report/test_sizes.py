"""The Sizes section on GMF's MovieLens-1M tables: the paper's SQ size implies no dense weights,
with which Table 1 gives its DPQ size (30.4%) but not its MGQE size (20.7%)."""

import json
from pathlib import Path

from mgqe_dist.embeddings import build_embedding
from mgqe_dist.report.experiment import Column, Experiment, Study, Table
from mgqe_dist.report.sizes import model_bits, sizes_section

USERS, ITEMS, DIM = 6040, 3416, 64
OPTIONS = {
    "full": {},
    "sq": {"bits": 8},
    "dpq": {"num_subspaces": 64, "num_centroids": [256]},
    "mgqe": {"num_subspaces": 64, "num_centroids": [256, 64], "shared_centroids": True},
}
VARIANTS = {"FE": "full", "SQ": "sq", "DPQ": "dpq", "MGQE": "mgqe"}
PAPER = {
    "gmf": {
        "FE": {"size_pct": 100.0},
        "SQ": {"size_pct": 25.0},
        "DPQ": {"size_pct": 30.4},
        "MGQE": {"size_pct": 20.7},
    }
}
DENSE_BITS = 65 * 32  # GMF's output layer


def _run(variant: str) -> dict:
    kind, tables, bits = VARIANTS[variant], {}, DENSE_BITS
    for name, n in (("items", ITEMS), ("users", USERS)):
        options = dict(OPTIONS[kind])
        if kind == "mgqe":
            options["tier_boundaries"] = [n // 10]  # head: the top 10% of ids
        bits += build_embedding(kind, n, DIM, **options).serving_bits()
        tables[name] = {"kind": kind, "num_embeddings": n, "embedding_dim": DIM, "options": options}
    full = (USERS + ITEMS) * DIM * 32 + DENSE_BITS
    return {
        "study": "gmf",
        "variant": variant,
        "seed": 0,
        "tables": tables,
        "model_size_bits": bits,
        "full_model_size_bits": full,
        "size_pct_of_full": 100 * bits / full,
    }


def test_sizes_check_the_papers_sizes_against_table_1(tmp_path: Path) -> None:
    (tmp_path / "paper.json").write_text(json.dumps(PAPER))
    table = Table("3", "t", tuple(VARIANTS), (Column("gmf", "hr@10", "gmf"),))
    exp = Experiment(
        name="x",
        seeds=(0,),
        studies=(Study("gmf", "GMF", "job.toml", ("hr@10",)),),
        variants={v: () for v in VARIANTS},
        tables=(table,),
        paper_results=str(tmp_path / "paper.json"),
    )
    results = {"runs": [_run(v) for v in VARIANTS]}
    model = model_bits(results, "gmf")
    assert model is not None and model.dense_bits == DENSE_BITS
    text = "\n".join(sizes_section(exp, results))
    assert "| gmf | items 3,416 x 64, users 6,040 x 64 | 0.01% | 0.0% |" in text
    assert " 30.4 / 30.4 / 30.4 ✓ |" in text  # DPQ follows Table 1
    assert " 24.8 / 24.8 / 20.7 ✗ |" in text  # MGQE does not
    assert "gmf: Table 1 gives 24.8% at the paper's dense share" in text

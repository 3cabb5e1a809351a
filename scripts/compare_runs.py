"""Print finished runs (metrics.json) side by side: quality, size, best epoch and time, with
the MGQE paper's value for the same model and kind beside each (Table 3, from
../shared/papers/mgqe-kang2020-results.json; "-" where the paper has none)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

PAPER_RESULTS = Path(__file__).resolve().parents[1] / "../shared/papers/mgqe-kang2020-results.json"
# Our embedding kind -> the paper's row name.
PAPER_ROWS = {"full": "FE", "lrf": "LRF", "sq": "SQ", "dpq": "DPQ", "mgqe": "MGQE"}


def paper_row(metrics: dict[str, Any], table: dict[str, Any]) -> dict[str, float]:
    """The paper's Table 3 entry for this run's model and kind, or {} if it has none. MGQE's
    variants (unshared, variable D) are Table 6 rows, not compared here."""
    options = metrics["config"]["embedding"]
    if metrics["embedding"] == "mgqe" and not options.get("shared_centroids", True):
        return {}
    return dict(table.get(metrics["model"], {}).get(PAPER_ROWS.get(metrics["embedding"], ""), {}))


def main(run_dirs: list[str]) -> int:
    """One row per run directory; exits 2 when a run has no metrics.json."""
    rows = []
    for run in run_dirs:
        path = Path(run) / "metrics.json"
        if not path.is_file():
            print(f"compare_runs: error: {path} not found", file=sys.stderr)
            return 2
        rows.append(json.loads(path.read_text()))
    table = (
        json.loads(PAPER_RESULTS.read_text())["table3_movielens_task1"]
        if PAPER_RESULTS.is_file()
        else {}
    )
    if any(r["data"]["origin"]["synthetic"] for r in rows):
        print("NOTE: GENERATED MovieLens-shaped data (MovieLens-1M not found): not paper numbers.")
    print("test HR@10 / NDCG@10 in %, full ranking; paper: Kang et al. 2020, Table 3 (10 runs)")
    print(
        f"{'run':<24}{'HR@10':>7}{'paper':>7}{'NDCG@10':>9}{'paper':>7}{'size %':>8}{'paper':>7}"
        f"{'best ep':>9}{'train s':>9}"
    )
    for run, m in zip(run_dirs, rows, strict=True):
        paper = paper_row(m, table)
        print(
            f"{Path(run).name:<24}{100 * m['hr@10']:>7.2f}{_paper(paper, 'hr@10'):>7}"
            f"{100 * m['ndcg@10']:>9.2f}{_paper(paper, 'ndcg@10'):>7}"
            f"{m['size_pct_of_full']:>8.1f}{_paper(paper, 'size_pct', 1):>7}"
            f"{m['best_epoch']:>9}{m['train_seconds']:>9.0f}"
        )
    return 0


def _paper(row: dict[str, float], key: str, digits: int = 2) -> str:
    return f"{row[key]:.{digits}f}" if key in row else "-"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Print a table of finished runs (metrics.json) side by side: quality, size and wall time."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(run_dirs: list[str]) -> int:
    """One row per run directory; exits 2 when a run has no metrics.json."""
    rows = []
    for run in run_dirs:
        path = Path(run) / "metrics.json"
        if not path.is_file():
            print(f"compare_runs: error: {path} not found", file=sys.stderr)
            return 2
        rows.append(json.loads(path.read_text()))
    if any(r["data"]["origin"]["synthetic"] for r in rows):
        print("NOTE: GENERATED MovieLens-shaped data (MovieLens-1M not found): not paper numbers.")
    print(f"{'run':<24}{'HR@10':>8}{'NDCG@10':>9}{'valid HR':>10}{'size %':>8}{'wall s':>8}")
    for run, m in zip(run_dirs, rows, strict=True):
        print(
            f"{Path(run).name:<24}{100 * m['hr@10']:>8.2f}{100 * m['ndcg@10']:>9.2f}"
            f"{100 * m['valid_hr@10']:>10.2f}{m['size_pct_of_full']:>8.1f}{m['wall_seconds']:>8.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

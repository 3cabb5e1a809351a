"""Reading a prepared dataset's stats.json; free of Ray so trainers can use it anywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STATS_FILE = "stats.json"


def load_stats(prepared_dir: str | Path) -> dict[str, Any]:
    """Read stats.json of a prepared dataset, with a clear error when it is not there."""
    path = Path(prepared_dir) / STATS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"prepared dataset not found at {prepared_dir} (no stats.json); run "
            "`mgqe-dist prepare JOB` first"
        )
    return json.loads(path.read_text())

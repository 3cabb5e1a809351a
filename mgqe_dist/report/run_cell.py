"""`python -m mgqe_dist.report.run_cell JOB.json`: train one grid cell from its resolved job
(the report runner starts one child per cell so that cells run in parallel and a crash stays
in its cell)."""

from __future__ import annotations

import json
import sys

from mgqe_dist.config import from_dict
from mgqe_dist.train.run import train_job

if __name__ == "__main__":
    with open(sys.argv[1]) as spec:
        train_job(from_dict(json.load(spec), where=sys.argv[1]))

"""`mgqe-dist submit`: run `mgqe-dist train JOB` on a running Ray cluster through Ray Jobs.

The current directory (the project checkout, without environments, data or outputs) is the
job's working_dir. The job spec's data and output paths, and the MLflow store the run is
tracked in (as resolved here), are passed as absolute paths, so the cluster reads and writes
where this machine does: on a multi-node cluster they must be on storage every node mounts (or
the store a tracking server).
"""

from __future__ import annotations

import asyncio
import queue
import shlex
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgqe_dist.config import load_job

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

# How long to wait for the cluster to answer at all, and for a freshly started one's job agent.
CONNECT_SECONDS = 20
AGENT_WAIT_SECONDS = 120
# Never uploaded with the working directory.
EXCLUDES = [
    ".venv",
    ".git",
    "runs",
    "prepared",
    "data",
    "artifacts",
    "feature_repo",
    "reports",
    "mlruns",
    "*.pyc",
]


class ClusterUnreachableError(ConnectionError):
    """No Ray cluster answered at the given address."""


# Environment of every Ray process of a training job. Ray Train's print patch sends a worker's
# print both to stdout and to its logger, so every progress line reached the driver twice.
RAY_ENV_VARS = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}


def submit_job(job_path: str, overrides: Sequence[str], address: str, follow: bool = True) -> int:
    """Submit; with `follow`, stream the job's logs and return 0 if it succeeded, else 1."""
    from ray.job_submission import JobStatus

    from mgqe_dist.train.tracking import mlflow_uri

    job = load_job(job_path, list(overrides))  # fail here, not on the cluster
    spec = Path(job_path).resolve()
    if not spec.is_relative_to(Path.cwd()):
        raise ValueError(f"{job_path}: the job spec must be inside the working directory")
    args = ["python", "-m", "mgqe_dist.cli", "train", str(spec.relative_to(Path.cwd()))]
    paths = [
        f"data.prepared_dir={Path(job.data.prepared_dir).resolve()}",
        f"output_dir={Path(job.output_dir).resolve()}",
    ]
    if "mlflow" in job.tracking.backends:
        paths.append(f"tracking.uri={mlflow_uri(job.tracking)}")
    for item in [*overrides, *paths]:
        args += ["--set", item]
    client = _connect(address)
    deadline = time.time() + AGENT_WAIT_SECONDS
    while True:
        try:
            job_id = client.submit_job(
                entrypoint=shlex.join(args),
                submission_id=f"{job.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                runtime_env={"working_dir": ".", "excludes": EXCLUDES, "env_vars": RAY_ENV_VARS},
            )
            break
        except RuntimeError as exc:  # a cluster that just started has no job agent yet
            if "No available agent" not in str(exc) or time.time() > deadline:
                raise
            time.sleep(2)
    print(f"submitted {job_id} to {address}", flush=True)
    if not follow:
        return 0

    async def stream() -> None:
        async for lines in client.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    asyncio.run(stream())
    status = client.get_job_status(job_id)
    print(f"job {job_id}: {status.value}", flush=True)
    return 0 if status == JobStatus.SUCCEEDED else 1


def _connect(address: str) -> JobSubmissionClient:
    """A Jobs client of the cluster at `address`, or ClusterUnreachableError within
    CONNECT_SECONDS: Ray's client waits without a bound (a host that drops packets, or a port
    that accepts and never answers, holds it for minutes or forever), so it connects in a daemon
    thread that is abandoned on timeout."""
    from ray.job_submission import JobSubmissionClient

    outcome: queue.Queue[Any] = queue.Queue()

    def connect() -> None:
        try:
            outcome.put(JobSubmissionClient(address))
        except Exception as exc:  # handed to the caller's thread
            outcome.put(exc)

    threading.Thread(target=connect, daemon=True).start()
    try:
        result = outcome.get(timeout=CONNECT_SECONDS)
    except queue.Empty:
        result = ConnectionError(f"no answer within {CONNECT_SECONDS} s")
    if isinstance(result, ConnectionError):
        reason = " ".join(str(result).split())
        raise ClusterUnreachableError(f"cannot reach the Ray cluster at {address} ({reason})")
    if isinstance(result, Exception):
        raise result
    return result

"""Run tracking: a training run's params (the resolved job config), per-epoch metrics, final
metrics and model files, logged to MLflow and to TensorBoard event files (`tracking.backends`).

Tracking never costs a run. Opening it checks every backend (MLflow creates its experiment and
run in the store), so an unusable store fails in one line before any training; after that, a
backend whose logging fails is reported in one line and dropped for the rest of the run, and
the run's own outputs (train/outputs.py) are written as always. MLflow and TensorBoard are
imported only when a run enables them.

MLflow metric names allow no "@": `hr@10` is logged as `hr_at_10`. Per-epoch values are the
series `epoch/<key>` (step = epoch), final ones keep their metrics.json names.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mgqe_dist.config import JobConfig, TrackingConfig, to_dict
from mgqe_dist.train.outputs import COMMITTED, METRICS_FILE

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient
    from torch.utils.tensorboard import SummaryWriter

# The local MLflow store when neither tracking.uri nor MLFLOW_TRACKING_URI names one. (MLflow's
# plain-directory store refuses new runs unless MLFLOW_ALLOW_FILE_STORE is set: SQLite it is.)
DEFAULT_STORE = Path("mlruns") / "mlflow.db"
TENSORBOARD_DIR = "tensorboard"
ARTIFACT_PATH = "model"  # the run's files, under this artifact directory
_INVALID_NAME = re.compile(r"[^\w\-. :/]")  # what MLflow refuses in a metric name


class TrackingError(ValueError):
    """A tracking backend cannot be used; raised before training starts."""


class Tracker(Protocol):
    """One backend's view of a run."""

    def log_epoch(self, record: dict[str, Any]) -> None:
        """One epoch's record (train/loop.py): losses, validation metrics, seconds."""

    def finish(self, record: dict[str, Any], out: Path) -> None:
        """The finished run's metrics.json record, and its directory."""

    def close(self, status: str) -> None:
        """End the run: FINISHED, FAILED or KILLED."""


@dataclass(frozen=True)
class RunInfo:
    """What identifies a run in every backend."""

    experiment: str
    run_name: str
    output_dir: Path
    params: dict[str, str]
    tags: dict[str, str]


def run_info(job: JobConfig) -> RunInfo:
    """Experiment tracking.experiment or the job's name; run name the output directory."""
    return RunInfo(
        experiment=job.tracking.experiment or job.name,
        run_name=job.output_dir,
        output_dir=Path(job.output_dir),
        params=flat_params(to_dict(job)),
        tags={
            "mgqe.output_dir": str(Path(job.output_dir).resolve()),
            "mgqe.model": job.model.name,
            "mgqe.embedding": job.embedding.kind,
        },
    )


class RunTracking:
    """The backends tracking one run; a backend that fails is reported and dropped."""

    def __init__(self, trackers: dict[str, Tracker]) -> None:
        self._trackers = trackers
        self._last_epoch = 0

    def log_epoch(self, record: dict[str, Any]) -> None:
        """Log one epoch as it ends (the local trainer calls this)."""
        self._last_epoch = record["epoch"]
        self._each(lambda tracker: tracker.log_epoch(record))

    def log_run(self, record: dict[str, Any], out: Path) -> None:
        """Log the finished run: the epochs of its history not logged yet (all of them for a
        sharded run, whose epochs end on Ray workers), final metrics and model files."""
        for epoch in record["history"]:
            if epoch["epoch"] > self._last_epoch:
                self.log_epoch(epoch)
        self._each(lambda tracker: tracker.finish(record, out))

    def close(self, status: str) -> None:
        """End the run in every backend."""
        self._each(lambda tracker: tracker.close(status))
        self._trackers = {}

    def _each(self, call: Callable[[Tracker], None]) -> None:
        for name, tracker in list(self._trackers.items()):
            try:
                call(tracker)
            except Exception as exc:  # tracking must not cost the run
                del self._trackers[name]
                print(
                    f"WARNING: {name} tracking failed and is off for the rest of this run (the "
                    f"run's own outputs are unaffected): {_one_line(exc)}",
                    file=sys.stderr,
                    flush=True,
                )
                with suppress(Exception):
                    tracker.close("FAILED")


@contextmanager
def track_run(job: JobConfig) -> Iterator[RunTracking]:
    """Open the job's tracking (TrackingError if a backend is unusable), and end it as FINISHED,
    FAILED or KILLED with the block."""
    tracking = open_tracking(job.tracking, run_info(job))
    try:
        yield tracking
    except BaseException as exc:
        tracking.close("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    tracking.close("FINISHED")


def open_tracking(cfg: TrackingConfig, run: RunInfo) -> RunTracking:
    """Start the run in every backend of `cfg`; if one cannot, close the others and raise."""
    trackers: dict[str, Tracker] = {}
    for name in cfg.backends:
        try:
            trackers[name] = TRACKERS[name](cfg, run)
        except Exception as exc:
            RunTracking(trackers).close("FAILED")
            raise TrackingError(_unusable(name, exc)) from exc
    return RunTracking(trackers)


def create_experiments(jobs: Iterable[JobConfig]) -> None:
    """Create the MLflow store and experiment of every job that tracks to MLflow: a report
    calls it before starting any cell, so that an unusable store fails the report at once."""
    seen = set()
    for job in jobs:
        if "mlflow" not in job.tracking.backends:
            continue
        uri, experiment = mlflow_uri(job.tracking), job.tracking.experiment or job.name
        if (uri, experiment) not in seen:
            try:
                _open_store(uri, experiment)
            except Exception as exc:
                raise TrackingError(_unusable("mlflow", _StoreError(uri, exc))) from exc
            seen.add((uri, experiment))


def mlflow_uri(cfg: TrackingConfig) -> str:
    """tracking.uri, else MLFLOW_TRACKING_URI, else the local DEFAULT_STORE; a local SQLite
    path is made absolute (children and Ray workers may run elsewhere)."""
    uri = cfg.uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_STORE}"
    path = _sqlite_path(uri)
    return f"sqlite:///{path}" if path is not None else uri


class MlflowTracker:
    """A run in an MLflow store, through MlflowClient (no global active run)."""

    def __init__(self, cfg: TrackingConfig, run: RunInfo) -> None:
        self.uri = mlflow_uri(cfg)
        tags = {**run.tags, "mlflow.source.name": "mgqe-dist train"}
        try:
            self.client, experiment_id = _open_store(self.uri, run.experiment)
            created = self.client.create_run(experiment_id, run_name=run.run_name, tags=tags)
        except Exception as exc:
            raise _StoreError(self.uri, exc) from exc
        self.run_id = created.info.run_id
        try:
            self._log(params=run.params)
        except Exception as exc:
            with suppress(Exception):
                self.client.set_terminated(self.run_id, "FAILED")
            raise _StoreError(self.uri, exc) from exc
        print(f"tracking: MLflow run {self.run_id} in {self.uri}", flush=True)

    def log_epoch(self, record: dict[str, Any]) -> None:
        self._log(metrics=_epoch_scalars(record), step=record["epoch"])

    def finish(self, record: dict[str, Any], out: Path) -> None:
        self._log(metrics=_final_scalars(record))
        commit = record.get("versions", {}).get("git_commit")
        if commit:
            self.client.set_tag(self.run_id, "mlflow.source.git.commit", commit)
        for name in (*COMMITTED, METRICS_FILE):
            self.client.log_artifact(self.run_id, str(out / name), ARTIFACT_PATH)

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)

    def _log(
        self,
        metrics: dict[str, float] | None = None,
        params: dict[str, str] | None = None,
        step: int = 0,
    ) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        entries = [Metric(k, v, now, step) for k, v in (metrics or {}).items()]
        for start in range(0, len(entries), 1000):  # MLflow's limits per batch
            self.client.log_batch(self.run_id, metrics=entries[start : start + 1000])
        pairs = [Param(k, v) for k, v in (params or {}).items()]
        for start in range(0, len(pairs), 100):
            self.client.log_batch(self.run_id, params=pairs[start : start + 100])


class TensorBoardTracker:
    """Event files in <output_dir>/tensorboard/, replaced when the run logs its first value
    (not before: a run refused at the start leaves the earlier run's files alone)."""

    def __init__(self, cfg: TrackingConfig, run: RunInfo) -> None:
        from torch.utils.tensorboard import SummaryWriter  # fails here if tensorboard is missing

        self._writer_type = SummaryWriter
        self._writer: SummaryWriter | None = None
        self.directory = run.output_dir / TENSORBOARD_DIR
        self._config = json.dumps(run.params, indent=2)
        self._steps = 0

    def log_epoch(self, record: dict[str, Any]) -> None:
        writer = self._open()
        for key, value in _epoch_scalars(record).items():
            writer.add_scalar(key, value, record["epoch"])
        self._steps = record["epoch"]
        writer.flush()

    def finish(self, record: dict[str, Any], out: Path) -> None:
        writer = self._open()
        for key, value in _final_scalars(record).items():
            writer.add_scalar(f"final/{key}", value, self._steps)
        writer.flush()

    def close(self, status: str) -> None:
        if self._writer is not None:
            self._writer.close()

    def _open(self) -> SummaryWriter:
        if self._writer is None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self._writer = self._writer_type(str(self.directory))
            # Indented: TensorBoard's text tab renders markdown, where this is a code block.
            self._writer.add_text("config", "    " + self._config.replace("\n", "\n    "))
        return self._writer


TRACKERS: dict[str, Callable[[TrackingConfig, RunInfo], Tracker]] = {
    "mlflow": MlflowTracker,
    "tensorboard": TensorBoardTracker,
}


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """The nested config as `section.key` -> value text (strings as they are, the rest JSON)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flat_params(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value if isinstance(value, str) else json.dumps(value)
    return flat


def metric_name(key: str) -> str:
    """A metrics.json key as MLflow accepts it: hr@10 -> hr_at_10."""
    return _INVALID_NAME.sub("_", key.replace("@", "_at_"))


def _epoch_scalars(record: dict[str, Any]) -> dict[str, float]:
    return {
        f"epoch/{metric_name(key)}": float(value)
        for key, value in record.items()
        if key != "epoch" and _is_number(value)
    }


def _final_scalars(record: dict[str, Any]) -> dict[str, float]:
    """The run's numeric results (test and final validation metrics, sizes, best epoch,
    seconds); the seed is a param."""
    return {
        metric_name(key): float(value)
        for key, value in record.items()
        if key != "seed" and _is_number(value)
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _open_store(uri: str, experiment: str) -> tuple[MlflowClient, str]:
    """A client of the store at `uri` and the id of `experiment`, created if new. A local
    SQLite store is opened under a file lock beside it (its directory created): MLflow creates
    its tables on first use, and runs that start together (the demo's two, a report's cells)
    would race to create them; its experiments keep their artifacts beside the database (MLflow
    would put them in ./mlruns of the working directory)."""
    for noisy in ("mlflow.store.db.utils", "alembic"):  # schema set-up at INFO level
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from mlflow.tracking import MlflowClient

    path = _sqlite_path(uri)
    if path is None:
        client = MlflowClient(uri)
        return client, _experiment_id(client, experiment, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.with_name(path.name + ".lock")):
        client = MlflowClient(uri)
        return client, _experiment_id(client, experiment, (path.parent / "artifacts").as_uri())


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def _experiment_id(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=artifact_location))
    except MlflowException:  # a tracking server's: created meanwhile by another run
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def _sqlite_path(uri: str) -> Path | None:
    """The absolute database path of a local `sqlite:///PATH` URI, else None."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri[len(prefix) :] in ("", ":memory:"):
        return None
    return Path(uri[len(prefix) :]).resolve()


class _StoreError(Exception):
    """An MLflow store that could not start a run, with its URI."""

    def __init__(self, uri: str, cause: BaseException) -> None:
        super().__init__(f"{uri}: {_one_line(cause)}")


def _unusable(name: str, exc: BaseException) -> str:
    fix = "fix tracking.uri (or MLFLOW_TRACKING_URI)" if name == "mlflow" else "install it"
    return (
        f"tracking: {name} is unusable ({_one_line(exc)}); {fix}, or leave {name!r} out of "
        "tracking.backends"
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__

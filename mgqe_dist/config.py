"""Job specs: TOML loaded into frozen dataclasses that reject unknown keys and wrong types.

A job spec is data: every section maps to one dataclass, and each component receives only its
own section. `--set section.key=value` overrides are parsed as TOML values and type-checked the
same way as the file.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


class ConfigError(ValueError):
    """A job spec or override is invalid; the message names the key and the problem."""


# Widest scalar quantization the SQ kind supports (embeddings/scalar_quant.py).
MAX_SQ_BITS = 16


@dataclass(frozen=True)
class FeatureConfig:
    """An extra categorical column of the log with its own vocabulary and tiers."""

    column: str
    # Tiers as in the data section; both empty = the data section's tier settings.
    tier_fractions: tuple[float, ...] = ()
    tier_min_counts: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _check_tiers(f"data.features[{self.column!r}]", self.tier_fractions, self.tier_min_counts)


@dataclass(frozen=True)
class DataConfig:
    """Where the interaction log comes from and how it is prepared."""

    # Raw input: a MovieLens directory/ratings.dat, a SASRec ml-1m.txt, or Parquet: one file, a
    # directory (searched recursively) or a glob such as "logs/2026-*/*.parquet".
    source: str = "../shared/data/ml-1m"
    # Input format; "auto" decides from the file names found at `source` (*.csv, *.tsv: a
    # header row naming user_id, item_id, timestamp and any other columns).
    # "movielens_untimed": UserID::MovieID::Rating lines (ratings_without_timestamps.dat), whose
    # missing time order allows only split = "random".
    format: Literal["auto", "movielens", "sasrec", "movielens_untimed", "parquet", "csv", "tsv"] = (
        "auto"
    )
    # What to do when `source` does not exist: fail, or generate a MovieLens-shaped log.
    if_missing: Literal["error", "synthesize"] = "error"
    # Prepared dataset directory (vocab/, train|valid|test.parquet, stats.json).
    prepared_dir: str = "prepared/ml1m"
    # Rows that break the log contract (null or negative ids/timestamps): stop with an error
    # naming them, or drop them to <prepared_dir>/quarantine.parquet with the reason (empty
    # files are then skipped too). stats.json accounts for every row either way.
    on_bad_rows: Literal["error", "drop"] = "error"
    # Fraction of each vocabulary (by frequency rank) in the head tier; one value per cut.
    tier_fractions: tuple[float, ...] = (0.1,)
    # Or tiers by training count: tier i holds ids seen at least tier_min_counts[i] times
    # (strictly decreasing; the rest form the last tier). Replaces tier_fractions when given.
    tier_min_counts: tuple[int, ...] = ()
    # Extra categorical columns ([[data.features]] column = "genre"), each remapped to
    # frequency-ranked ids with its own vocab/<column>.parquet and tiers.
    features: tuple[FeatureConfig, ...] = ()
    # How rows are split: per user by time (the latest distinct item is test, the one before
    # valid; for ranking), or each (user, item) pair with all its rows at random by
    # random_fractions = (train, valid, test), seeded by the job's seed (the paper's 90/10 for
    # rating regression).
    split: Literal["leave_last_two_out", "random"] = "leave_last_two_out"
    random_fractions: tuple[float, ...] = (0.9, 0.0, 0.1)
    # > 0: also write sequences.parquet, each user's latest this-many training items (SASRec
    # uses 50; distinct items, by their latest time); needs the leave-last-two-out split.
    # Pass 1 keeps length + 2 distinct items per user.
    sequence_length: int = 0

    # Size of the generated log when `if_missing = "synthesize"`, and its seed: the dataset
    # stays the same whatever the job's (training) seed, as a real one would.
    synth_users: int = 6040
    synth_items: int = 3706
    synth_rows: int = 1_000_209
    synth_seed: int = 0
    # Order the generated log's timestamps so that each user's sequence carries a trend (a
    # sequential signal, as real histories have); without it times are random.
    synth_sequential: bool = False

    def __post_init__(self) -> None:
        _check_tiers("data", self.tier_fractions, self.tier_min_counts)
        fractions = self.random_fractions
        shares_ok = all(math.isfinite(f) and f >= 0 for f in fractions)
        if len(fractions) != 3 or not shares_ok or abs(sum(fractions) - 1) > 1e-9:
            raise ConfigError(
                f"data.random_fractions = {list(fractions)}: expected three shares (train, "
                "valid, test), each >= 0, summing to 1"
            )
        if fractions[0] <= 0:
            raise ConfigError("data.random_fractions: the train share must be > 0")
        _at_least("data", self, 0, "sequence_length", "synth_seed")
        _at_least("data", self, 1, "synth_users", "synth_rows")
        _at_least("data", self, 2, "synth_items")
        if self.sequence_length and self.split != "leave_last_two_out":
            raise ConfigError('data.sequence_length needs data.split = "leave_last_two_out"')


@dataclass(frozen=True)
class EmbeddingConfig:
    """Which embedding kind replaces the user and item tables, and its options.

    Each kind receives only the options its builder accepts (see train/factory.py).
    """

    kind: str = "full"
    dim: int = 64
    init_std: float = 0.01
    # MGQE / DPQ: subspaces D and centroids K, one value for all tiers or one per tier
    # (head first). Variable D needs shared_centroids = false.
    num_subspaces: tuple[int, ...] = (64,)
    num_centroids: tuple[int, ...] = (256, 64)
    shared_centroids: bool = True
    # LRF: rank r of the factorisation.
    rank: int = 48
    # SQ: bits per value after post-training quantization.
    bits: int = 8

    def __post_init__(self) -> None:
        _at_least("embedding", self, 1, "dim", "num_subspaces", "num_centroids", "rank")
        _positive("embedding", self, "init_std")
        in_range = f"in [1, {MAX_SQ_BITS}]"
        _require("embedding.bits", self.bits, lambda b: 1 <= b <= MAX_SQ_BITS, in_range)


@dataclass(frozen=True)
class ModelConfig:
    """Which model to train, chosen by name from the model registry."""

    name: str = "gmf"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of the local training loop."""

    epochs: int = 20
    batch_size: int = 2048
    learning_rate: float = 0.001
    num_negatives: int = 4
    # "log": implicit feedback, each positive against num_negatives sampled items (ranking,
    # HR/NDCG; SASRec scores the next item of a sequence); "squared": regress the log's
    # `target` column, e.g. ratings (RMSE).
    loss: Literal["log", "squared"] = "log"
    target: str = "rating"
    # Stop after this many epochs without a better validation NDCG or RMSE (0 = run every
    # epoch). The model evaluated on test is the best-validation one, as in NCF and SASRec;
    # with no validation split (random_fractions valid share 0) it is the last epoch's.
    early_stopping_patience: int = 5
    # Progress of each epoch: a bar when the output is a terminal, else this many plain lines
    # per epoch (0 = neither, only the per-epoch summary line).
    progress_updates: int = 4
    # Where to train and evaluate: "auto" takes the GPU when there is one.
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        # The log loss needs negatives; a training run needs an epoch and a non-empty batch.
        _at_least("train", self, 1, "epochs", "batch_size", "num_negatives")
        _at_least("train", self, 0, "early_stopping_patience", "progress_updates")
        _positive("train", self, "learning_rate")


@dataclass(frozen=True)
class TrainerConfig:
    """Where training runs: one local process, or N Ray Train workers with TorchRec sharding."""

    # 0 trains in this process (train.*, pure PyTorch tables); N >= 1 starts N Ray Train
    # workers whose per-id tables DistributedModelParallel shards (gloo on CPU, nccl on GPU).
    num_workers: int = 0
    # Force one sharding type for every table; "auto" lets TorchRec's planner choose.
    sharding_type: Literal["auto", "data_parallel", "table_wise", "row_wise", "column_wise"] = (
        "auto"
    )
    # Optimizer of the sharded per-id tables, fused into TorchRec's backward. fbgemm's CPU
    # kernels have no Adam, so Adagrad (as in DLRM) is the default; dense layers and
    # codebooks use Adam with train.learning_rate.
    embedding_optimizer: Literal["adagrad", "sgd"] = "adagrad"
    embedding_learning_rate: float = 0.05
    # Checkpoint after every epoch and, if > 0, also every this many steps within an epoch.
    checkpoint_every_steps: int = 0
    # Worker-group restarts from the last checkpoint after a worker or node dies.
    max_failures: int = 2
    cpus_per_worker: int = 1

    def __post_init__(self) -> None:
        _at_least("trainer", self, 0, "num_workers", "checkpoint_every_steps", "max_failures")
        _at_least("trainer", self, 1, "cpus_per_worker")
        _positive("trainer", self, "embedding_learning_rate")


@dataclass(frozen=True)
class EvalConfig:
    """Full-ranking evaluation settings."""

    k: int = 10
    user_batch_size: int = 1024

    def __post_init__(self) -> None:
        _at_least("eval", self, 1, "k", "user_batch_size")


@dataclass(frozen=True)
class TrackingConfig:
    """Where `train` logs its run: params (the resolved job config), per-epoch metrics, final
    metrics and model files (see train/tracking.py)."""

    # Any of "mlflow" and "tensorboard"; [] tracks nothing. TensorBoard event files go to
    # <output_dir>/tensorboard/.
    backends: tuple[Literal["mlflow", "tensorboard"], ...] = ("mlflow", "tensorboard")
    # MLflow tracking URI; "" takes the MLFLOW_TRACKING_URI environment variable, and without
    # it the local store sqlite:///mlruns/mlflow.db (artifacts beside it in mlruns/artifacts/).
    uri: str = ""
    # MLflow experiment; "" = the job's name (a report's cells use the report's name).
    experiment: str = ""

    def __post_init__(self) -> None:
        if len(set(self.backends)) < len(self.backends):
            raise ConfigError(f"tracking.backends lists a backend twice: {list(self.backends)}")


@dataclass(frozen=True)
class JobConfig:
    """A whole job spec; `name`, `seed` and `output_dir` are top-level keys."""

    name: str
    output_dir: str
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        if self.seed < 0:  # numpy and the split hash take unsigned seeds
            raise ConfigError(f"seed must be >= 0, got {self.seed}")


def _at_least(section: str, cfg: Any, low: int, *names: str) -> None:
    """Each named field of `cfg` (every entry of a tuple field) is a finite number >= `low`."""
    for name in names:
        _require(f"{section}.{name}", getattr(cfg, name), lambda v: v >= low, f">= {low}")


def _positive(section: str, cfg: Any, *names: str) -> None:
    """Each named field of `cfg` is a finite number > 0."""
    for name in names:
        _require(f"{section}.{name}", getattr(cfg, name), lambda v: v > 0, "> 0")


def _check_tiers(section: str, fractions: tuple[float, ...], min_counts: tuple[int, ...]) -> None:
    """Tier shares in (0, 1) that leave ids for the last tier; minimum counts >= 1 that
    strictly decrease from the head down."""
    _require(f"{section}.tier_fractions", fractions, lambda f: 0 < f < 1, "in (0, 1)")
    if sum(fractions) >= 1:
        raise ConfigError(
            f"{section}.tier_fractions must sum below 1 (the rest is the last tier), got "
            f"{list(fractions)}"
        )
    _require(f"{section}.tier_min_counts", min_counts, lambda c: c >= 1, ">= 1")
    if list(min_counts) != sorted(set(min_counts), reverse=True):
        raise ConfigError(
            f"{section}.tier_min_counts must strictly decrease, got {list(min_counts)}"
        )


def _require(key: str, value: Any, ok: Callable[[float], bool], rule: str) -> None:
    """`value`, or each entry of a tuple, is finite and passes `ok`; else a ConfigError that
    names the key, the rule and the value."""
    entries = value if isinstance(value, tuple) else (value,)
    if not all(math.isfinite(v) and ok(v) for v in entries):
        what = f"{key} entries" if isinstance(value, tuple) else key
        shown = list(value) if isinstance(value, tuple) else value
        raise ConfigError(f"{what} must be {rule}, got {shown}")


def load_job(path: str | Path, overrides: list[str] | None = None) -> JobConfig:
    """Read a TOML job spec, apply `section.key=value` overrides, and validate everything."""
    path = Path(path)
    raw = read_toml(path, "job spec")
    for item in overrides or []:
        _apply_override(raw, item)
    return _build(JobConfig, raw, where=str(path))


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file's content; a missing file or bad TOML is a ConfigError naming `what`."""
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def from_dict(raw: dict[str, Any], where: str = "job") -> JobConfig:
    """A JobConfig from plain data (as `to_dict` writes it), validated like a file."""
    return _build(JobConfig, raw, where)  # type: ignore[no-any-return]


def to_dict(cfg: JobConfig) -> dict[str, Any]:
    """The resolved config as plain data (tuples become lists), for metrics and run records."""
    return dataclasses.asdict(cfg)


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected section.key=value")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()  # a bare word is a string: --set embedding.kind=mgqe
    node = raw
    *parents, leaf = key.strip().split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {item!r}: {part!r} is not a section")
    node[leaf] = value


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: missing required key {f.name!r}")
            continue
        values[f.name] = _coerce(hints[f.name], raw[f.name], f"{where}: {f.name}")
    return cls(**values)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Check `value` against a field's type hint; ints widen to floats, lists become tuples."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    origin = typing.get_origin(hint)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{where} = {value!r}: must be one of {list(allowed)}")
        return value
    if origin is tuple:
        item_type = typing.get_args(hint)[0]
        if not isinstance(value, list | tuple):
            value = [value]
        return tuple(_coerce(item_type, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _coerce(option, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where} = {value!r}: expected {hint}")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is type(None) and value is None:
        return None
    # bool is a subclass of int: reject True where an int is expected, and vice versa.
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(
            f"{where} = {value!r}: expected {hint.__name__}, got {type(value).__name__}"
        )
    return value

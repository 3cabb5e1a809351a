"""The serving artifact (DESIGN.md): export a trained run, load it back with verification.

Layout of an artifact directory:
    manifest.json         format version, model spec, per table n, d, tiers, D_i, K_i, bits,
                          variant, dtype; sha256 and size of every other file; size accounting
    codes.safetensors     bit-packed codes (uint8 streams), one tensor per table and tier
    weights.safetensors   float32 values: centroids, SQ ranges, FE/LRF rows, dense layers
    vocab/<feature>.parquet  raw id -> id of each table (copied from the prepared data)
The directory is written atomically; an existing directory is only replaced if it holds a
manifest.json.

Trust model: the manifest's sizes and sha256 sums catch damaged, truncated and mixed-up files,
not tampering (whoever can write the directory can rewrite the manifest). What loading guarantees
whatever the directory holds: nothing is unpickled (JSON, safetensors and Parquet only, and
export reads model.pt weights-only), and only the files of the layout above are read, by names
the loader makes itself (never a path from the manifest), each of them listed in the manifest
and verified, inside the directory. Anything else is one ArtifactError naming the file.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from data_pipeline.files import atomic_path, sha256_file, write_json_atomic
from data_pipeline.schema import id_kind
from mgqe_dist.models import Recommender
from mgqe_dist.run_record import versions
from mgqe_dist.serve.tables import SERVING_FORMATS, ServingTable, serving_table
from mgqe_dist.size import model_serving_bits
from mgqe_dist.train.factory import TABLE_FEATURES, build_from_spec
from mgqe_dist.train.outputs import MODEL_FILE, SPEC_FILE, load_weights, read_run_metrics

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CODES_FILE, WEIGHTS_FILE = "codes.safetensors", "weights.safetensors"
MODEL_FILES = (CODES_FILE, WEIGHTS_FILE)
MODEL_ID_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


class ArtifactError(ValueError):
    """An artifact or run directory that cannot be exported or loaded, with the reason."""


def export_artifact(run_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Export a finished training run to a serving artifact; returns the manifest."""
    run_dir = Path(run_dir)
    spec, metrics, model = load_run(run_dir)
    source = {
        "run_dir": str(run_dir.resolve()),
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, int | float | str)},
        "trained_with": metrics["versions"],
        # What `mgqe-dist evaluate ARTIFACT` needs: the job (task, eval settings) and its data.
        "config": metrics["config"],
        "prepared_path": metrics["data"]["prepared_path"],
    }
    vocab_dir = Path(metrics["data"]["prepared_path"]) / "vocab"
    return export_model(model, spec, out_dir, vocab_dir, metrics["data"]["checksums"], source)


def export_model(
    model: Recommender,
    spec: Mapping[str, Any],
    out_dir: str | Path,
    vocab_dir: Path,
    data_checksums: Mapping[str, str],
    source: Mapping[str, Any],
) -> dict[str, Any]:
    """Write the artifact of a trained model built from `spec` (see the module docstring).

    `vocab_dir` holds the prepared data's vocabularies, each checked against `data_checksums`
    (the prepared data's stats.json checksums the model was trained on).
    """
    out_dir = Path(out_dir)
    served = {
        name: serving_table(table["kind"], getattr(model, name))
        for name, table in spec["tables"].items()
    }
    codes: dict[str, torch.Tensor] = {}
    weights = {key: value.float() for key, value in _dense_state(model, served).items()}
    for name, table in served.items():
        for key, value in table.tensors().items():
            target = codes if value.dtype == torch.uint8 else weights
            target[f"{name}.{key}"] = value.contiguous()
    with atomic_path(out_dir, marker=MANIFEST) as tmp:
        tmp.mkdir()
        save_file(codes, tmp / CODES_FILE)
        save_file(weights, tmp / WEIGHTS_FILE)
        vocab_files = _copy_vocabs(vocab_dir, data_checksums, spec, tmp)
        model_bytes = sum((tmp / f).stat().st_size for f in MODEL_FILES)
        size_bits = model_serving_bits(model)
        manifest = {
            "format_version": FORMAT_VERSION,
            "model": {"name": spec["model"], "options": spec["options"]},
            "tables": {
                name: {
                    "kind": spec["tables"][name]["kind"],
                    "feature": TABLE_FEATURES[name],
                    "dtype": "float32",
                    **table.meta(),
                }
                for name, table in served.items()
            },
            "files": {
                f: {"sha256": sha256_file(tmp / f), "bytes": (tmp / f).stat().st_size}
                for f in (*MODEL_FILES, *vocab_files)
            },
            "size": {
                "model_size_bits": size_bits,
                "model_file_bytes": model_bytes,
                "file_bytes_over_accounting": model_bytes * 8 / size_bits,
            },
            "data_checksums": dict(data_checksums),
            "source": dict(source),
            "exported_with": versions(),
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_json_atomic(manifest, tmp / MANIFEST)
    return manifest


def load_run(run_dir: Path) -> tuple[dict, dict, Recommender]:
    """A finished run's model spec, metrics and trained model in eval mode (weights-only
    load); used by export and by the report's code figure. A run whose files are not one
    run's outputs (train/outputs.py) is refused."""
    metrics = read_run_metrics(run_dir)
    spec = json.loads((run_dir / SPEC_FILE).read_text())
    model = build_from_spec(spec)
    weights = run_dir / MODEL_FILE
    state = load_weights(weights, ArtifactError)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())
        raise ArtifactError(f"{weights} does not fit {run_dir / SPEC_FILE}: {reason}") from None
    model.eval()
    return spec, metrics, model


def _dense_state(model: nn.Module, tables: Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    """State-dict entries outside the embedding tables (served as float32)."""
    return {
        key: value.detach()
        for key, value in model.state_dict().items()
        if key.split(".")[0] not in tables
    }


def _copy_vocabs(
    vocab_dir: Path, checksums: Mapping[str, str], spec: Mapping[str, Any], out: Path
) -> list[str]:
    """Copy each table's vocabulary, checked against the checksums the model was trained on."""
    (out / "vocab").mkdir()
    names = []
    for table in spec["tables"]:
        name = vocab_file(table)
        source = vocab_dir / Path(name).name
        if not source.is_file():
            raise ArtifactError(f"{source} is missing: the run's prepared data is needed for ids")
        if sha256_file(source) != checksums.get(name):
            raise ArtifactError(
                f"{source} changed since training (its sha256 differs from the run's record)"
            )
        shutil.copyfile(source, out / name)
        names.append(name)
    return names


class ServedModel(nn.Module):
    """A trained model rebuilt from an artifact for inference, plus raw-id lookup.

    Lookups take model ids, as `ids()` makes them from raw ids (an unknown raw id gets the OOV
    id n - 1). Every lookup through a table, direct (a call, codes(), tiers_of()) or by the
    model, refuses what no raw id maps to: ids outside [0, n) and tensors that are not integer
    (see _check_model_ids).
    """

    def __init__(self, model: Recommender, manifest: dict[str, Any], vocabs: dict[str, pa.Array]):
        super().__init__()
        self.model, self.manifest, self._vocabs = model.eval(), manifest, vocabs
        for name in manifest["tables"]:
            table = self.table(name)
            table.id_check = _model_id_check(name, table.num_embeddings)

    def forward(self, user_ids: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        """The model's logits for its inputs (model ids, see the class docstring)."""
        with torch.no_grad():
            return self.model(user_ids, item_ids)

    def score_all_items(self, user_ids: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        """The model's full-ranking scores (U, I)."""
        with torch.no_grad():
            return self.model.score_all_items(user_ids, item_ids)

    def table(self, name: str) -> ServingTable:
        """The serving table `name` (e.g. "items")."""
        if name not in self.manifest["tables"]:
            raise ValueError(f"no table {name!r}; tables: {sorted(self.manifest['tables'])}")
        table = getattr(self.model, name)
        assert isinstance(table, ServingTable)
        return table

    def vocab(self, name: str) -> pa.Array:
        """Raw ids of table `name` in model-id order (the OOV id has none, so it is left out)."""
        self.table(name)  # an unknown name is refused with the known ones
        return self._vocabs[name]

    def ids(self, name: str, raw_ids: Sequence[Any] | np.ndarray | pa.Array) -> torch.Tensor:
        """Model ids of raw ids (as in the interaction log); unknown raw ids get the OOV id.

        Raw ids must be of the vocabulary's kind (integers or strings): a float, bool, null or
        an id of the other kind is refused (TypeError, ValueError for null), never converted."""
        vocab = self.vocab(name)
        index = pc.index_in(_raw_id_array(name, raw_ids, vocab.type), value_set=vocab)
        oov = self.table(name).num_embeddings - 1
        return torch.from_numpy(
            index.fill_null(oov).to_numpy(zero_copy_only=False).astype(np.int64)
        )


def _raw_id_array(table: str, raw_ids: Any, kind: pa.DataType) -> pa.Array:
    """`raw_ids` as an Arrow array of the vocabulary's type `kind`: only widened (int32 to
    int64), never converted from another kind."""
    try:
        array = raw_ids if isinstance(raw_ids, pa.Array) else pa.array(raw_ids)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        reason = " ".join(str(exc).split())
        raise TypeError(f"table {table!r}: raw ids must all be of one kind ({reason})") from None
    if len(array) == 0:
        return pa.array([], kind)
    if id_kind(array.type) != id_kind(kind):  # floats and bools are no id kind
        raise TypeError(
            f"table {table!r}: raw ids are {id_kind(kind)}s, got {array.type} "
            f"(first value {array[0].as_py()!r})"
        )
    if array.null_count:
        first = pc.index(pc.is_null(array), True).as_py()
        raise ValueError(f"table {table!r}: raw id at position {first} is null")
    try:
        return array.cast(kind)
    except pa.ArrowInvalid:
        top = pc.max(array).as_py()
        raise ValueError(f"table {table!r}: raw id {top} does not fit {kind}") from None


def _model_id_check(table: str, n: int) -> Callable[[Any], None]:
    """The `id_check` of table `table` of n ids: refuses ids no raw id maps to."""

    def check(ids: Any) -> None:
        _check_model_ids(table, ids, n)

    return check


def _check_model_ids(table: str, ids: Any, n: int) -> None:
    """Model ids are an integer tensor in [0, n): an id beyond the vocabulary would otherwise
    be served the OOV row in silence, a float tensor would fail deep inside torch."""
    if not isinstance(ids, torch.Tensor) or ids.dtype not in MODEL_ID_DTYPES:
        kind = ids.dtype if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise TypeError(f"table {table!r}: model ids must be an integer tensor, got {kind}")
    outside = (ids < 0) | (ids >= n)
    if bool(outside.any()):
        raise ValueError(
            f"table {table!r}: model id {int(ids[outside][0])} is outside [0, {n}) "
            f"({int(outside.sum())} such ids); ServedModel.ids() maps raw ids, unknown ones to "
            f"the OOV id {n - 1}"
        )


def vocab_file(table: str) -> str:
    """Where table `table`'s vocabulary lies, in an artifact and in the prepared data."""
    return f"vocab/{TABLE_FEATURES[table]}.parquet"


def load_artifact(path: str | Path) -> ServedModel:
    """Load and verify an artifact; raises ArtifactError naming any missing, changed, unlisted
    or foreign file (see the module docstring)."""
    root = Path(path)
    manifest = read_manifest(root)
    tensors = {
        **load_file(root / CODES_FILE),
        **load_file(root / WEIGHTS_FILE),
    }
    tables = manifest["tables"]

    def table_builder(name: str, meta: Mapping[str, Any]) -> ServingTable:
        prefix = f"{name}."
        own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        return SERVING_FORMATS.get(meta["format"]).from_artifact(meta, own)

    try:
        spec = {"model": manifest["model"]["name"], "options": manifest["model"]["options"]}
        model = build_from_spec({**spec, "tables": tables}, table_builder)
    except KeyError as exc:
        raise ArtifactError(f"{root / MANIFEST}: a model or table entry has no {exc}") from None
    dense = {k: v for k, v in tensors.items() if k.split(".")[0] not in tables}
    try:
        model.load_state_dict(dense)
    except RuntimeError as exc:
        raise ArtifactError(
            f"{root / WEIGHTS_FILE}: dense weights do not fit the model: {exc}"
        ) from exc
    vocabs = {}
    for name, meta in tables.items():
        vocab = pq.read_table(root / vocab_file(name))
        if vocab.num_rows != meta["n"] or vocab["id"].to_pylist() != list(range(meta["n"])):
            raise ArtifactError(f"{root / vocab_file(name)} does not match table {name}")
        vocabs[name] = vocab["raw_id"].combine_chunks().slice(0, meta["n"] - 1)
    if model_serving_bits(model) != manifest["size"]["model_size_bits"]:
        raise ArtifactError(f"{root}: rebuilt model size differs from the manifest's accounting")
    return ServedModel(model, manifest, vocabs)


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest, after checking its format and every file that loading reads (listed,
    inside `root`, of the listed size and sha256)."""
    path = root / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{path} is missing: not a mgqe-dist artifact directory")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: format_version {version!r} is not supported "
            f"(this mgqe-dist reads version {FORMAT_VERSION})"
        )
    _check_sections(manifest, path)
    listed = manifest["files"]
    needed = [*MODEL_FILES, *(vocab_file(table) for table in manifest["tables"])]
    foreign = sorted(set(listed) - set(needed))
    if foreign:
        raise ArtifactError(f"{path} lists files that are not part of an artifact: {foreign}")
    for name in needed:
        if name not in listed:
            raise ArtifactError(f"{path} does not list {name}, which loading reads")
        _verify(root, name, listed[name])
    return manifest


def _check_sections(manifest: dict[str, Any], path: Path) -> None:
    """The manifest's sections exist, and each table is one this format knows, with its own
    feature (so that no vocabulary path comes from the manifest)."""
    malformed = [
        key
        for key in ("model", "tables", "files", "size")
        if not isinstance(manifest.get(key), dict)
    ]
    if malformed:
        raise ArtifactError(f"{path}: missing or malformed section(s) {malformed}")
    for table, meta in manifest["tables"].items():
        feature = meta.get("feature") if isinstance(meta, dict) else None
        if table not in TABLE_FEATURES or feature != TABLE_FEATURES[table]:
            raise ArtifactError(
                f"{path}: table {table!r} with feature {feature!r} is not one of this "
                f"format's tables {TABLE_FEATURES}"
            )


def _verify(root: Path, name: str, expected: Any) -> None:
    """One file of the artifact is inside `root` and has the manifest's size and sha256."""
    file = root / name
    if not file.resolve().is_relative_to(root.resolve()):
        raise ArtifactError(f"{file} links outside the artifact directory")
    if not file.is_file():
        raise ArtifactError(f"{file} is missing (listed in {MANIFEST})")
    if not isinstance(expected, dict) or not {"bytes", "sha256"} <= set(expected):
        raise ArtifactError(f"{root / MANIFEST}: the entry of {name} has no bytes and sha256")
    size = file.stat().st_size
    if size != expected["bytes"]:
        raise ArtifactError(
            f"{file} has {size} bytes, the manifest says {expected['bytes']} "
            f"(truncated or replaced)"
        )
    if sha256_file(file) != expected["sha256"]:
        raise ArtifactError(f"{file} content changed: sha256 differs from {MANIFEST}")

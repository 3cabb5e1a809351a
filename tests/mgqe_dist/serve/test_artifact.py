"""export -> load_artifact: exact codes, equal outputs, verified files, size on disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from data_pipeline.files import sha256_file
from mgqe_dist.cli import main
from mgqe_dist.config import EmbeddingConfig, load_job
from mgqe_dist.models import Recommender, model_options
from mgqe_dist.serve import ArtifactError, ServedModel, export_model, load_artifact
from mgqe_dist.serve.tables import CodebookTable
from mgqe_dist.train.data import load_prepared
from mgqe_dist.train.factory import build_from_spec, table_spec
from tests.conftest import TINY_JOB, Payload, write_job

KINDS = ["full", "sq", "dpq", "mgqe"]
# DPQ has one tier, so one K; the tiny job's MGQE uses K = [16, 4].
CENTROIDS = {"dpq": (16,)}


def _train(job: Path, out: Path, *settings: str) -> Path:
    overrides = [f'output_dir="{out}"', "train.epochs=1", *settings]
    assert main(["train", str(job), *(a for s in overrides for a in ("--set", s))]) == 0
    return out


def _trained_model(run_dir: Path) -> Recommender:
    model = build_from_spec(json.loads((run_dir / "model.json").read_text()))
    model.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    return model.eval()


def _export(run_dir: Path, out: Path) -> ServedModel:
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    return load_artifact(out)


@pytest.fixture(scope="module")
def mgqe_artifact(tiny_job: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("artifact")
    run = _train(tiny_job, root / "run", "embedding.kind=mgqe")
    assert main(["export", str(run), "--out", str(root / "artifact")]) == 0
    return root / "artifact"


@pytest.mark.parametrize("model_name", ["gmf", "neumf"])
@pytest.mark.parametrize("kind", KINDS)
def test_served_model_equals_trained_model(
    tiny_job: Path, tmp_path: Path, model_name: str, kind: str
) -> None:
    centroids = list(CENTROIDS.get(kind, (16, 4)))
    settings = (f"embedding.kind={kind}", f"model.name={model_name}")
    run = _train(tiny_job, tmp_path / "run", *settings, f"embedding.num_centroids={centroids}")
    trained, served = _trained_model(run), _export(run, tmp_path / "artifact")
    users, items = torch.arange(40), torch.arange(served.table("items").num_embeddings)
    with torch.no_grad():
        for name, ids in (("users", users), ("items", items)):
            assert torch.equal(served.table(name)(ids), getattr(trained, name)(ids))
        expected = trained.score_all_items(users, items)
        pairs = trained(users, items[: len(users)])
    torch.testing.assert_close(served.score_all_items(users, items), expected)
    torch.testing.assert_close(served(users, items[: len(users)]), pairs)


@pytest.mark.parametrize("kind", KINDS)
def test_sasrec_artifact_equals_model(tiny_job: Path, tmp_path: Path, kind: str) -> None:
    job = load_job(tiny_job)
    data = load_prepared(job.data.prepared_dir)
    centroids = CENTROIDS.get(kind, (16, 4))
    emb = EmbeddingConfig(kind=kind, dim=16, num_subspaces=(8,), num_centroids=centroids)
    spec = {
        "model": "sasrec",
        "options": model_options("sasrec", max_len=10),
        "tables": {"items": table_spec(emb, data.num_items, data.tier_boundaries("item_id"))},
    }
    torch.manual_seed(0)
    model = build_from_spec(spec)
    model.items.finalize()
    model.eval()
    prepared = Path(job.data.prepared_dir)
    export_model(model, spec, tmp_path / "art", prepared / "vocab", data.stats["checksums"], {})
    served = load_artifact(tmp_path / "art")
    sequences = torch.tensor(
        [[-1] * 7 + [3, 5, 1], list(range(10)), [-1] * 9 + [data.num_items - 1]]
    )
    items = torch.arange(data.num_items)
    with torch.no_grad():
        expected = model.score_all_items(sequences, items)
    torch.testing.assert_close(served.score_all_items(sequences, items), expected)


def test_raw_ids_map_to_model_ids_and_unknown_to_oov(mgqe_artifact: Path) -> None:
    served = load_artifact(mgqe_artifact)
    vocab = pq.read_table(mgqe_artifact / "vocab" / "item_id.parquet")
    raw = vocab["raw_id"].to_pylist()[:5]
    oov = served.table("items").num_embeddings - 1
    assert served.ids("items", [*raw, 10**12]).tolist() == [0, 1, 2, 3, 4, oov]


def test_manifest_describes_tables_and_files(mgqe_artifact: Path) -> None:
    manifest = json.loads((mgqe_artifact / "manifest.json").read_text())
    items = manifest["tables"]["items"]
    assert items["variant"] == "shared_variable_k" and items["d"] == 16
    assert [t["num_centroids"] for t in items["tiers"]] == [16, 4]
    assert [t["bits"] for t in items["tiers"]] == [4, 2]
    assert set(manifest["files"]) == {
        "codes.safetensors",
        "weights.safetensors",
        "vocab/user_id.parquet",
        "vocab/item_id.parquet",
    }


def _copy(artifact: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(artifact, tmp_path / "copy"))


def _manifest(art: Path) -> dict:
    return json.loads((art / "manifest.json").read_text())


def _rewrite(art: Path, manifest: dict) -> None:
    (art / "manifest.json").write_text(json.dumps(manifest))


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_truncated_file_is_detected(mgqe_artifact: Path, tmp_path: Path) -> None:
    art = _copy(mgqe_artifact, tmp_path)
    data = (art / "codes.safetensors").read_bytes()
    (art / "codes.safetensors").write_bytes(data[:-10])
    with pytest.raises(ArtifactError, match=r"codes.safetensors has \d+ bytes.*truncated"):
        load_artifact(art)


def test_changed_byte_is_detected(mgqe_artifact: Path, tmp_path: Path) -> None:
    art = _copy(mgqe_artifact, tmp_path)
    _flip_last_byte(art / "weights.safetensors")
    with pytest.raises(ArtifactError, match=r"weights\.safetensors content changed"):
        load_artifact(art)


def test_unknown_format_version_is_refused(mgqe_artifact: Path, tmp_path: Path) -> None:
    art = _copy(mgqe_artifact, tmp_path)
    _rewrite(art, {**_manifest(art), "format_version": 99})
    with pytest.raises(ArtifactError, match="format_version 99 is not supported"):
        load_artifact(art)


def test_export_of_unfinished_run_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "a")]) == 2
    assert "model.json is missing" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_size_on_disk_is_within_2_percent_of_accounting(tmp_path: Path) -> None:
    """ML-1M-like proportions (64-d MGQE, K = [256, 64]), large enough that headers are noise."""
    text = TINY_JOB.replace("synth_items = 200", "synth_items = 6000")
    text = text.replace("synth_users = 120", "synth_users = 1000")
    text = text.replace("synth_rows = 4000", "synth_rows = 40000")
    text = text.replace("dim = 16\nnum_subspaces = 8\nnum_centroids = [16, 4]\n", "")
    job = write_job(tmp_path, text)
    assert main(["prepare", str(job)]) == 0
    run = _train(job, tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    served = _export(run, tmp_path / "artifact")
    size = served.manifest["size"]
    assert size["model_size_bits"] == metrics["model_size_bits"]
    assert 1.0 <= size["file_bytes_over_accounting"] <= 1.02


@pytest.mark.parametrize("listed", ["../outside/secret", "{tmp}/outside/secret"])
def test_listed_path_outside_the_artifact_is_refused_unread(
    mgqe_artifact: Path, tmp_path: Path, listed: str
) -> None:
    art = _copy(mgqe_artifact, tmp_path)
    secret = tmp_path / "outside" / "secret"
    secret.parent.mkdir()
    secret.write_bytes(b"x" * 4321)
    manifest = _manifest(art)
    entry = {"bytes": 4321, "sha256": sha256_file(secret)}  # right, so only the name can fail
    manifest["files"][listed.format(tmp=tmp_path)] = entry
    _rewrite(art, manifest)
    with pytest.raises(ArtifactError, match="lists files that are not part of an artifact") as e:
        load_artifact(art)
    assert "4321" not in str(e.value)


def test_feature_naming_a_vocabulary_outside_the_artifact_is_refused(
    mgqe_artifact: Path, tmp_path: Path
) -> None:
    art = _copy(mgqe_artifact, tmp_path)
    (tmp_path / "outside").mkdir()
    shutil.copyfile(art / "vocab" / "item_id.parquet", tmp_path / "outside" / "evil.parquet")
    manifest = _manifest(art)
    manifest["tables"]["items"]["feature"] = "../../outside/evil"
    _rewrite(art, manifest)
    with pytest.raises(ArtifactError, match=r"table 'items' with feature '\.\./\.\./outside/evil'"):
        load_artifact(art)


def test_a_file_left_out_of_the_listing_is_refused(mgqe_artifact: Path, tmp_path: Path) -> None:
    art = _copy(mgqe_artifact, tmp_path)
    _flip_last_byte(art / "weights.safetensors")
    manifest = _manifest(art)
    del manifest["files"]["weights.safetensors"]  # so that the changed file is not checked
    _rewrite(art, manifest)
    with pytest.raises(ArtifactError, match=r"does not list weights\.safetensors, which loading"):
        load_artifact(art)


def test_manifest_without_files_is_refused(mgqe_artifact: Path, tmp_path: Path) -> None:
    art = _copy(mgqe_artifact, tmp_path)
    manifest = _manifest(art)
    del manifest["files"]
    _rewrite(art, manifest)
    with pytest.raises(ArtifactError, match=r"missing or malformed section\(s\) \['files'\]"):
        load_artifact(art)


def test_vocabulary_linked_from_outside_the_artifact_is_refused(
    mgqe_artifact: Path, tmp_path: Path
) -> None:
    art = _copy(mgqe_artifact, tmp_path)
    shutil.move(art / "vocab", tmp_path / "elsewhere")  # same files, hashes still match
    (art / "vocab").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ArtifactError, match=r"vocab/\w+\.parquet links outside the artifact"):
        load_artifact(art)


def _record_checksum(run: Path, name: str) -> None:
    """Record `name`'s current sha256 in metrics.json, as whoever changed the file could."""
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["outputs"][name] = sha256_file(run / name)
    (run / "metrics.json").write_text(json.dumps(metrics))


@pytest.mark.parametrize("damage", ["payload", "garbage", "truncated"])
def test_tampered_model_file_exits_2_naming_it(
    mgqe_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture, damage: str
) -> None:
    run = Path(shutil.copytree(mgqe_artifact.parent / "run", tmp_path / "run"))
    marker = tmp_path / "code-ran"
    if damage == "payload":
        torch.save({"items.weight": Payload(marker)}, run / "model.pt")
    elif damage == "garbage":
        (run / "model.pt").write_bytes(b"not a torch file")
    else:
        data = (run / "model.pt").read_bytes()
        (run / "model.pt").write_bytes(data[: len(data) // 2])
    _record_checksum(run, "model.pt")  # so that loading, not the checksum, has to refuse it
    assert main(["export", str(run), "--out", str(tmp_path / "artifact")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"{run / 'model.pt'} is not a weights-only model state" in err
    assert not marker.exists() and not (tmp_path / "artifact").exists()


def test_export_onto_a_directory_that_is_no_artifact_exits_2_and_keeps_it(
    mgqe_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = Path(shutil.copytree(mgqe_artifact.parent / "run", tmp_path / "run"))
    before = sorted(p.name for p in run.iterdir())
    assert main(["export", str(run), "--out", str(run)]) == 2
    assert "run is a non-empty directory without manifest.json" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == before


@pytest.mark.parametrize(
    ("raw", "error", "message"),
    [
        ([2.5], TypeError, r"table 'items': raw ids are integers, got double \(first value 2.5\)"),
        ([1, 2.0], TypeError, "raw ids are integers, got double"),
        (["7"], TypeError, "raw ids are integers, got string"),
        ([True], TypeError, "raw ids are integers, got bool"),
        ([1, "a"], TypeError, "table 'items': raw ids must all be of one kind"),
        ([1, None], ValueError, "table 'items': raw id at position 1 is null"),
        (np.array([2**63], dtype=np.uint64), ValueError, "raw id 9223372036854775808 does not fit"),
    ],
)
def test_raw_ids_that_are_not_of_the_vocabularys_kind_are_refused(
    mgqe_artifact: Path, raw: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        load_artifact(mgqe_artifact).ids("items", raw)


def test_unknown_table_is_refused_with_the_known_ones(mgqe_artifact: Path) -> None:
    served = load_artifact(mgqe_artifact)
    for lookup in (served.table, served.vocab, lambda name: served.ids(name, [1])):
        with pytest.raises(ValueError, match=r"no table 'item'; tables: \['items', 'users'\]"):
            lookup("item")


def test_model_ids_no_raw_id_maps_to_are_refused(mgqe_artifact: Path) -> None:
    served = load_artifact(mgqe_artifact)
    items = served.table("items")
    n = items.num_embeddings
    with pytest.raises(ValueError, match=rf"table 'items': model id 1000000 is outside \[0, {n}\)"):
        items(torch.tensor([3, 10**6]))
    with pytest.raises(ValueError, match="table 'users': model id -1 is outside"):
        served(torch.tensor([-1]), torch.tensor([0]))
    with pytest.raises(TypeError, match="table 'items': model ids must be an integer tensor"):
        items(torch.tensor([0.5]))
    assert items(torch.tensor([n - 1])).shape == (1, 16)  # the OOV id itself is served


def test_codes_and_tiers_of_refuse_the_ids_a_lookup_refuses(mgqe_artifact: Path) -> None:
    items = load_artifact(mgqe_artifact).table("items")
    assert isinstance(items, CodebookTable)
    n = items.num_embeddings
    for lookup in (items.codes, items.tiers_of):
        with pytest.raises(ValueError, match=rf"table 'items': model id {n} is outside \[0, {n}\)"):
            lookup(torch.tensor([0, n]))
        with pytest.raises(ValueError, match="table 'items': model id -1 is outside"):
            lookup(torch.tensor([[-1]]))
        with pytest.raises(TypeError, match="table 'items': model ids must be an integer tensor"):
            lookup(torch.tensor([0.5]))
    oov = torch.tensor([n - 1])  # the OOV id itself has codes and a tier
    assert items.codes(oov).shape[0] == 1 and int(items.tiers_of(oov)[0]) == len(items.tiers) - 1


def test_export_of_a_run_half_written_over_another_exits_2(
    mgqe_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # A retrain killed after writing its model.pt, before its metrics.json: the directory holds
    # the new weights next to the earlier run's metrics.
    run = Path(shutil.copytree(mgqe_artifact.parent / "run", tmp_path / "run"))
    state = torch.load(run / "model.pt", weights_only=True)
    torch.save({key: value + 1 for key, value in state.items()}, run / "model.pt")
    assert main(["export", str(run), "--out", str(tmp_path / "artifact")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"{run / 'model.pt'} is not the file {run / 'metrics.json'} records" in err
    assert not (tmp_path / "artifact").exists()

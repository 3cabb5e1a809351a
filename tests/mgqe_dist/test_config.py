from pathlib import Path

import pytest

from mgqe_dist.config import ConfigError, load_job

BASE = 'name = "t"\noutput_dir = "out"\n'


def _job(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.toml"
    path.write_text(BASE + text)
    return path


def test_defaults_fill_missing_sections(tmp_path: Path) -> None:
    job = load_job(_job(tmp_path, ""))
    assert job.embedding.kind == "full" and job.embedding.dim == 64
    assert job.data.tier_fractions == (0.1,)


def test_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train: unknown key\(s\) \['epochz'\]"):
        load_job(_job(tmp_path, "[train]\nepochz = 3\n"))


def test_wrong_type_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train: epochs = 'ten': expected int, got str"):
        load_job(_job(tmp_path, '[train]\nepochs = "ten"\n'))


def test_bool_is_not_an_int(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected int, got bool"):
        load_job(_job(tmp_path, "[train]\nepochs = true\n"))


def test_literal_values_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="if_missing = 'guess': must be one of"):
        load_job(_job(tmp_path, '[data]\nif_missing = "guess"\n'))


def test_missing_required_key(tmp_path: Path) -> None:
    path = tmp_path / "job.toml"
    path.write_text('name = "t"\n')
    with pytest.raises(ConfigError, match="missing required key 'output_dir'"):
        load_job(path)


def test_overrides_are_typed(tmp_path: Path) -> None:
    job = load_job(
        _job(tmp_path, ""),
        [
            "train.epochs=1",
            "embedding.kind=mgqe",
            "train.learning_rate=1",
            "embedding.num_centroids=[8,2]",
        ],
    )
    assert job.train.epochs == 1
    assert job.embedding.kind == "mgqe"
    assert job.train.learning_rate == 1.0 and isinstance(job.train.learning_rate, float)
    assert job.embedding.num_centroids == (8, 2)


def test_bad_override_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train: epochs = 'many'"):
        load_job(_job(tmp_path, ""), ["train.epochs=many"])
    with pytest.raises(ConfigError, match=r"expected section\.key=value"):
        load_job(_job(tmp_path, ""), ["train.epochs"])


def test_missing_job_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="job spec not found"):
        load_job(tmp_path / "nope.toml")


def test_shipped_job_specs_load() -> None:
    root = Path(__file__).resolve().parents[2] / "jobs"
    specs = sorted(root.glob("*.toml"))
    assert specs
    for spec in specs:
        assert load_job(spec).name == spec.stem


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("random_fractions = [0.9, 0.2]", "expected three shares"),
        ("random_fractions = [0.0, 0.5, 0.5]", "train share must be > 0"),
        ('split = "random"\nsequence_length = 50', "needs data.split"),
    ],
)
def test_split_settings_are_checked(tmp_path: Path, data: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_job(_job(tmp_path, f"[data]\n{data}\n"))


def test_extra_features_are_an_array_of_tables(tmp_path: Path) -> None:
    text = '[[data.features]]\ncolumn = "genre"\ntier_min_counts = [100]\n'
    (feature,) = load_job(_job(tmp_path, text)).data.features
    assert (feature.column, feature.tier_min_counts, feature.tier_fractions) == (
        "genre",
        (100,),
        (),
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=0", "train.epochs must be >= 1, got 0"),
        ("train.batch_size=0", "train.batch_size must be >= 1, got 0"),
        ("train.num_negatives=-1", "train.num_negatives must be >= 1, got -1"),
        ("train.learning_rate=-0.1", r"train.learning_rate must be > 0, got -0.1"),
        ("train.learning_rate=nan", "train.learning_rate must be > 0, got nan"),
        ("train.early_stopping_patience=-1", "train.early_stopping_patience must be >= 0"),
        ("train.progress_updates=-2", "train.progress_updates must be >= 0, got -2"),
        ("eval.k=0", "eval.k must be >= 1, got 0"),
        ("eval.user_batch_size=0", "eval.user_batch_size must be >= 1, got 0"),
        ("embedding.dim=0", "embedding.dim must be >= 1, got 0"),
        ("embedding.num_centroids=[8,0]", r"num_centroids entries must be >= 1, got \[8, 0\]"),
        ("embedding.init_std=0", "embedding.init_std must be > 0, got 0.0"),
        ("embedding.bits=17", r"embedding.bits must be in \[1, 16\], got 17"),
        ("embedding.rank=0", "embedding.rank must be >= 1, got 0"),
        ("trainer.embedding_learning_rate=0", "trainer.embedding_learning_rate must be > 0"),
        ("data.tier_fractions=[0.6,0.5]", r"data.tier_fractions must sum below 1"),
        ("data.tier_fractions=[1.5]", r"data.tier_fractions entries must be in \(0, 1\)"),
        ("data.tier_min_counts=[5,10]", r"data.tier_min_counts must strictly decrease"),
        ("data.synth_rows=0", "data.synth_rows must be >= 1, got 0"),
        ("data.synth_seed=-3", "data.synth_seed must be >= 0, got -3"),
        ("seed=-1", "seed must be >= 0, got -1"),
    ],
)
def test_numeric_settings_out_of_range_name_the_key(
    tmp_path: Path, override: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_job(_job(tmp_path, ""), [override])


def test_a_features_tiers_are_checked(tmp_path: Path) -> None:
    text = '[[data.features]]\ncolumn = "genre"\ntier_min_counts = [0]\n'
    with pytest.raises(ConfigError, match=r"data.features\['genre'\].tier_min_counts entries"):
        load_job(_job(tmp_path, text))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            'tracking.backends=["mlflow", "wandb"]',
            r"tracking: backends\[1\] = 'wandb': must be one of \['mlflow', 'tensorboard'\]",
        ),
        ('tracking.backends=["mlflow", "mlflow"]', "tracking.backends lists a backend twice"),
    ],
)
def test_unknown_tracking_backend_names_the_key_and_choices(
    tmp_path: Path, override: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_job(_job(tmp_path, ""), [override])


def test_tracking_defaults_to_mlflow_and_tensorboard(tmp_path: Path) -> None:
    tracking = load_job(_job(tmp_path, "")).tracking
    assert tracking.backends == ("mlflow", "tensorboard") and tracking.uri == ""
    assert load_job(_job(tmp_path, "[tracking]\nbackends = []\n")).tracking.backends == ()

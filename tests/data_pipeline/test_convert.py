from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_pipeline.convert import (
    ConversionError,
    delimited_to_parquet,
    read_movielens_ratings,
    read_movielens_untimed,
    read_sasrec_text,
)


def test_movielens_ratings_become_contract_columns(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    table = read_movielens_ratings(path)
    assert table.column_names == ["user_id", "item_id", "timestamp", "rating"]
    assert table["user_id"].to_pylist() == [1, 1, 2]
    assert table["item_id"].to_pylist() == [1193, 661, 1193]
    assert table["timestamp"].to_pylist() == [978300760, 978302109, 978298413]
    assert table["rating"].to_pylist() == [5.0, 3.0, 4.0]
    assert str(table.schema.field("user_id").type) == "int64"


def test_movielens_bad_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_text("1::1193::5::978300760\n1::661::3\n")
    with pytest.raises(ConversionError, match=r"ratings\.dat:2: expected 4 fields"):
        read_movielens_ratings(path)


def test_movielens_non_integer_id_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_text("1::1193::5::978300760\nx::661::3::978302109\n")
    with pytest.raises(ConversionError, match=r":2: UserID is not an integer"):
        read_movielens_ratings(path)


def test_negative_ids_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_text("1::-5::5::978300760\n")
    with pytest.raises(ConversionError, match="MovieID is negative"):
        read_movielens_ratings(path)


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_text("")
    with pytest.raises(ConversionError, match="empty"):
        read_movielens_ratings(path)


def test_sasrec_line_order_becomes_per_user_time(tmp_path: Path) -> None:
    path = tmp_path / "ml-1m.txt"
    path.write_text("1 10\n2 7\n1 11\n1 3\n2 9\n")
    table = read_sasrec_text(path)
    rows = list(
        zip(
            table["user_id"].to_pylist(),
            table["item_id"].to_pylist(),
            table["timestamp"].to_pylist(),
            strict=True,
        )
    )
    assert rows == [(1, 10, 0), (2, 7, 0), (1, 11, 1), (1, 3, 2), (2, 9, 1)]


@pytest.mark.parametrize(("suffix", "sep"), [("csv", ","), ("tsv", "\t")])
def test_delimited_files_are_streamed_to_parquet(tmp_path: Path, suffix: str, sep: str) -> None:
    lines = ["user_id,item_id,timestamp,rating", "u1,i1,10,4.5", "u1,i2,11,3", "u2,i1,12,5"]
    path = tmp_path / f"log.{suffix}"
    path.write_text("\n".join(line.replace(",", sep) for line in lines) + "\n")
    out = delimited_to_parquet(path, tmp_path / "log.parquet", sep)
    table = pq.read_table(out)
    assert table["user_id"].to_pylist() == ["u1", "u1", "u2"]
    assert table["timestamp"].to_pylist() == [10, 11, 12]
    assert table["rating"].to_pylist() == [4.5, 3.0, 5.0]


def test_csv_with_a_short_line_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\n1,2,3\n4,5\n")
    with pytest.raises(ConversionError, match=r"log\.csv: .*Expected 3 columns, got 2"):
        delimited_to_parquet(path, tmp_path / "log.parquet", ",")
    assert not (tmp_path / "log.parquet").exists()


def test_csv_without_a_contract_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user,item_id,timestamp\n1,2,3\n")
    with pytest.raises(ConversionError, match=r"header has no column\(s\) \['user_id'\]"):
        delimited_to_parquet(path, tmp_path / "log.parquet", ",")


def _csv(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "log.csv"
    path.write_text("\n".join(["user_id,item_id,timestamp", *rows]) + "\n")
    return path


def _many_rows(bad_line: int, bad: str) -> list[str]:
    """500 good rows (several 1 KiB blocks) with line `bad_line` replaced by `bad`."""
    rows = [f"{r % 7},{r % 11},{r}" for r in range(500)]
    rows[bad_line - 2] = bad  # line 1 is the header
    return rows


@pytest.mark.parametrize("later_block", [False, True])
def test_csv_timestamp_that_is_not_an_integer_names_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, later_block: bool
) -> None:
    monkeypatch.setattr("data_pipeline.convert.CSV_BLOCK_BYTES", 1024)
    line = 400 if later_block else 3
    path = _csv(tmp_path, _many_rows(line, "1,2,yesterday"))
    with pytest.raises(ConversionError, match=rf"log\.csv:{line}: timestamp is not an integer: "):
        delimited_to_parquet(path, tmp_path / "log.parquet", ",")
    assert not (tmp_path / "log.parquet").exists()


@pytest.mark.parametrize("later_block", [False, True])
def test_csv_id_that_is_not_an_integer_makes_string_ids_and_says_so(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    later_block: bool,
) -> None:
    monkeypatch.setattr("data_pipeline.convert.CSV_BLOCK_BYTES", 1024)
    line = 450 if later_block else 4
    path = _csv(tmp_path, _many_rows(line, "u9,2,3"))
    table = pq.read_table(delimited_to_parquet(path, tmp_path / "log.parquet", ","))
    assert table.num_rows == 500
    assert table["user_id"].to_pylist()[line - 2] == "u9" and table["user_id"][0].as_py() == "0"
    assert table.schema.field("item_id").type == "int64"
    err = capsys.readouterr().err
    assert f"NOTE: {path}: column 'user_id' holds string ids: line {line} has 'u9'" in err
    assert "item_id" not in err


def test_untimed_movielens_ratings_keep_ratings_and_line_order(tmp_path: Path) -> None:
    path = tmp_path / "ratings_without_timestamps.dat"
    path.write_text("1::1193::5\n1::661::3\n2::1193::4\n")
    table = read_movielens_untimed(path)
    assert table.column_names == ["user_id", "item_id", "timestamp", "rating"]
    assert table["rating"].to_pylist() == [5.0, 3.0, 4.0]
    assert table["timestamp"].to_pylist() == [0, 1, 2]


def test_untimed_movielens_bad_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "ratings_without_timestamps.dat"
    path.write_text("1::1193::5\n1::661::3::978302109\n")
    with pytest.raises(ConversionError, match=r"timestamps\.dat:2: expected 3 fields"):
        read_movielens_untimed(path)

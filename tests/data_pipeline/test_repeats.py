import numpy as np
import pyarrow as pa

from data_pipeline.repeats import HeldOut
from data_pipeline.split import TEST, TRAIN, VALID
from data_pipeline.units import Unit


def _held() -> HeldOut:
    # Users "a" and "b" hold out (valid, test) items (2, 3) and (5, 6), in unit 0 rows 1-4.
    rows = pa.table(
        {
            "user_id": ["a", "a", "b", "b"],
            "item_id": [2, 3, 5, 6],
            "unit": [0, 0, 0, 0],
            "row": [1, 2, 3, 4],
            "split": pa.array([VALID, TEST, VALID, TEST], pa.int8()),
        }
    )
    return HeldOut.of(rows)


def test_only_good_training_rows_of_held_out_pairs_are_duplicates() -> None:
    held = _held()
    table = pa.table(
        {
            "user_id": ["a", "a", "a", "b", "b", "c", "a", "b"],
            "item_id": [3, 2, 3, 5, 6, 3, 2, None],
        }
    )
    split = held.splits(Unit(0, "f", 0, 0, 1, 0, 8), table.num_rows)
    assert split.tolist() == [TRAIN, VALID, TEST, VALID, TEST, TRAIN, TRAIN, TRAIN]
    good = np.array([True] * 6 + [False, True])  # row 6 is bad: quarantined for its own reason
    # Row 0 repeats a's test pair; c has no held-out pairs; row 7 has no item.
    assert held.duplicates(table, split, good).tolist() == [True] + [False] * 7

"""Leave-last-two-out split: per user, the latest interaction is test, the one before valid.

Time ties are broken by raw item id so the split is deterministic. Users with fewer than
three interactions keep all of them in train (they cannot be evaluated without leaving the
model nothing to learn from); prepare reports how many such users there were.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SPLITS = ("train", "valid", "test")
TRAIN, VALID, TEST = range(3)
MIN_EVAL_HISTORY = 3


def leave_last_two_out(table: pa.Table) -> pa.Table:
    """Return `table` sorted by (user, time, item) with an int8 `split` column added.

    Works on any set of whole user histories (one user or many), so it can run per group in a
    distributed group-by.
    """
    table = table.sort_by(
        [("user_id", "ascending"), ("timestamp", "ascending"), ("item_id", "ascending")]
    )
    n = table.num_rows
    users = table["user_id"].combine_chunks()
    new_user = np.ones(n, dtype=bool)
    if n > 1:
        new_user[1:] = pc.not_equal(users[1:], users[:-1]).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(new_user)
    sizes = np.diff(np.r_[starts, n])
    # Position counted from each user's last interaction: 0 = last, 1 = second to last.
    from_end = np.repeat(starts + sizes, sizes) - 1 - np.arange(n)
    evaluable = np.repeat(sizes >= MIN_EVAL_HISTORY, sizes)
    split = np.full(n, TRAIN, dtype=np.int8)
    split[evaluable & (from_end == 0)] = TEST
    split[evaluable & (from_end == 1)] = VALID
    return table.append_column("split", pa.array(split))

"""Generated MovieLens-shaped interaction logs, for when the real data is not available, and
the spec of the large power-law logs that `powerlaw` writes.

Items follow a Zipf popularity law; users and items also carry latent factors, and each user
picks items by popularity times affinity, so collaborative filtering has structure to learn
(a popularity-only model is beaten by a personalised one). Pairs are unique per user, as in
MovieLens; every user has at least `min_per_user` interactions. Timestamps are random unless
`sequential`, which orders each user's items so that sequence models have a signal to learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

ML1M_START = 956_703_932  # first ML-1M timestamp (2000-04-25), so generated times look alike
ML1M_SPAN = 90_000_000  # about 34 months, ML-1M's time span
# The record of what `synth` wrote, in every directory it writes (readers skip "_" names).
SYNTH_RECORD = "_synth.json"


@dataclass(frozen=True)
class SynthSpec:
    """Shape of a generated log; defaults mimic MovieLens-1M."""

    users: int = 6040
    items: int = 3706
    rows: int = 1_000_209
    zipf_exponent: float = 1.0
    latent_dim: int = 8
    affinity: float = 1.5
    min_per_user: int = 20
    seed: int = 0
    # Order each user's timestamps along a drift of taste (see _drift_order); the interactions
    # and ratings stay those of the unordered log.
    sequential: bool = False


# Stand-in genres of generated items: the paper's Fig. 8 genres, one per latent direction.
GENRES = ("Sci-Fi", "Romance", "Animation", "Horror")


@dataclass(frozen=True)
class _Latents:
    """Draws shared by the log and its genres (one random stream, in this order)."""

    rng: np.random.Generator
    per_user: np.ndarray
    log_pop: np.ndarray
    user_f: np.ndarray
    item_f: np.ndarray


def _latents(spec: SynthSpec) -> _Latents:
    _check(spec)
    rng = np.random.default_rng(spec.seed)
    per_user = _interactions_per_user(spec, rng)
    popularity = 1.0 / np.arange(1, spec.items + 1) ** spec.zipf_exponent
    log_pop = np.log(popularity / popularity.sum())
    # Popularity rank is shuffled against raw ids so that raw id order carries no signal.
    log_pop = log_pop[rng.permutation(spec.items)]
    user_f = rng.normal(size=(spec.users, spec.latent_dim)) / np.sqrt(spec.latent_dim)
    item_f = rng.normal(size=(spec.items, spec.latent_dim))
    return _Latents(rng, per_user, log_pop, user_f, item_f)


def generate_genres(spec: SynthSpec) -> pa.Table:
    """movies.dat-like genres of the generated items: item_id, genre. Each item gets the genre
    of its strongest latent factor among the first len(GENRES) (a stand-in with the property
    that matters for the paper's Fig. 8: same-genre items are liked by the same users)."""
    item_f = _latents(spec).item_f[:, : len(GENRES)]
    genre = item_f.argmax(axis=1)
    return pa.table(
        {
            "item_id": np.arange(1, spec.items + 1, dtype=np.int64),
            "genre": pa.array(np.array(GENRES)[genre]),
        }
    )


def generate_log(spec: SynthSpec) -> pa.Table:
    """Return a table with the interaction-log columns; deterministic given `spec`."""
    latents = _latents(spec)
    rng, per_user, log_pop = latents.rng, latents.per_user, latents.log_pop
    user_f, item_f = latents.user_f, latents.item_f

    users, items = [], []
    for start in range(0, spec.users, 512):
        stop = min(start + 512, spec.users)
        logits = log_pop + spec.affinity * user_f[start:stop] @ item_f.T
        # Gumbel top-k draws k distinct items with probability proportional to exp(logits).
        keys = logits + rng.gumbel(size=logits.shape)
        for row, user in enumerate(range(start, stop)):
            chosen = np.argpartition(-keys[row], per_user[user] - 1)[: per_user[user]]
            users.append(np.full(len(chosen), user, dtype=np.int64))
            items.append(np.sort(chosen))
    user_col = np.concatenate(users)
    item_col = np.concatenate(items)
    affinity = np.einsum("ij,ij->i", user_f[user_col], item_f[item_col])
    rating = np.clip(np.round(3.6 + 1.2 * affinity + rng.normal(0, 0.5, len(user_col))), 1, 5)
    timestamp = ML1M_START + rng.integers(0, ML1M_SPAN, len(user_col))
    if spec.sequential:
        timestamp = _drift_order(timestamp, user_col, item_f[item_col], rng)
    # MovieLens ids start at 1.
    return pa.table(
        {
            "user_id": user_col + 1,
            "item_id": item_col + 1,
            "timestamp": timestamp.astype(np.int64),
            "rating": rating.astype(np.float64),
        }
    )


def _drift_order(
    timestamp: np.ndarray, user_col: np.ndarray, item_vecs: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Reassign each user's timestamps so that the user meets items in order of their projection
    on a random per-user direction of latent space: consecutive items are alike and the next one
    follows the trend of the last few, as in real watch histories (random times carry none)."""
    direction = rng.normal(size=(int(user_col.max()) + 1, item_vecs.shape[1]))
    drift = np.einsum("ij,ij->i", item_vecs, direction[user_col])
    by_drift = np.lexsort((drift, user_col))
    by_time = np.lexsort((timestamp, user_col))
    ordered = np.empty_like(timestamp)
    ordered[by_drift] = timestamp[by_time]  # both group rows by user, in the same user order
    return ordered


def _interactions_per_user(spec: SynthSpec, rng: np.random.Generator) -> np.ndarray:
    """Heavy-tailed counts with a floor, summing exactly to `spec.rows`."""
    weights = rng.lognormal(mean=0.0, sigma=1.0, size=spec.users)
    extra = rng.multinomial(spec.rows - spec.min_per_user * spec.users, weights / weights.sum())
    counts = spec.min_per_user + extra
    cap = spec.items // 2
    counts = np.minimum(counts, cap)
    # Hand what the cap removed to users with room left; _check guarantees there is enough.
    while (deficit := spec.rows - int(counts.sum())) > 0:
        room = cap - counts
        counts += np.minimum(rng.multinomial(deficit, room / room.sum()), room)
    return counts


def _check(spec: SynthSpec) -> None:
    if spec.users <= 0 or spec.items <= 1:
        raise ValueError(f"synthetic log needs users > 0 and items > 1, got {spec}")
    check_row_budget(spec.rows, spec.users, spec.items, spec.min_per_user)


def check_row_budget(rows: int, users: int, items: int, min_per_user: int) -> None:
    """Every user gets at least min_per_user rows and sees at most half the items."""
    if rows < min_per_user * users:
        raise ValueError(f"synthetic log: rows={rows} < min_per_user*users={min_per_user * users}")
    if rows > users * (items // 2):
        raise ValueError(
            f"synthetic log: rows={rows} exceeds users*items/2={users * (items // 2)} (each "
            "user sees at most half the items)"
        )


@dataclass(frozen=True)
class PowerLawSpec:
    """Shape of a generated log."""

    rows: int = 10_000_000
    users: int = 1_000_000
    items: int = 1_000_000
    item_exponent: float = 1.0  # Zipf exponent of item popularity
    user_exponent: float = 0.5  # Zipf exponent of user activity
    topics: int = 64
    affinity: float = 0.7  # share of a user's interactions from its favourite topic
    min_per_user: int = 5
    files: int = 8
    seed: int = 0

    def check(self) -> None:
        """Raise ValueError naming the first impossible setting."""
        if min(self.rows, self.users, self.items, self.topics, self.files) <= 0:
            raise ValueError(f"synth: rows, users, items, topics and files must be > 0: {self}")
        if self.topics > self.items:
            raise ValueError(f"synth: topics ({self.topics}) > items ({self.items})")
        if not 0 <= self.affinity <= 1:
            raise ValueError(f"synth: affinity must be in [0, 1], got {self.affinity}")
        check_row_budget(self.rows, self.users, self.items, self.min_per_user)

"""The paper's claims, each checked against the finished runs with one rule.

A comparison of variant A against variant B on one study and metric takes the difference of
their means over the finished seeds, signed so that positive means A is better (higher HR and
NDCG, lower RMSE), and its standard error sqrt(se_A^2 + se_B^2) (seeds as independent draws).
A claim that A beats B *holds* when the difference exceeds 2 standard errors, *does not hold*
when it is below -2 standard errors, and is *within noise* in between; a claim that A matches
or beats B holds unless the difference is below -2 standard errors; a claim that A drops
against B is the mirror of "beats". A side with fewer than two finished seeds has no standard
error: *not enough runs yet*. A claim of several comparisons holds when all of its evaluated
comparisons hold, does not hold when any does not, and is within noise otherwise.

Claims about the figures use the same rule on what the figures show: MGQE against every other
method at the same size (Fig. 6, MGQE's curve interpolated in log size), the training loss
curves (Fig. 7, a tolerance instead, since the loss of one seed has little noise), and the
genre separation of codes (Fig. 8, over the seeds whose codes were measured).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mgqe_dist.report.experiment import Experiment
from mgqe_dist.report.results import Summary, paper_metric, summarize
from mgqe_dist.report.series import loss_curve_mean, size_points

HOLDS, NOISE, FAILS, PENDING = "holds", "within noise", "does not hold", "not enough runs yet"
Kind = Literal["beats", "matches", "drops"]
# Fig. 7: MGQE's mean loss curve "closely follows" FE's when it stays within this relative gap
# of FE's at every point after the first epoch.
LOSS_TOLERANCE = 0.05
# "About the paper's size": our size within this many percentage points of the paper's.
SIZE_TOLERANCE = 5.0


@dataclass(frozen=True)
class Check:
    """One line of a claim: what was compared, our numbers, the paper's, the verdict."""

    what: str
    ours: str
    paper: str
    verdict: str


@dataclass(frozen=True)
class Claim:
    """A claim of the paper and its checks."""

    text: str
    source: str  # where the paper makes it
    checks: tuple[Check, ...]

    @property
    def verdict(self) -> str:
        """The claim's verdict from its checks (see the module docstring)."""
        return combine(c.verdict for c in self.checks)


def verdict(difference: float, se: float, kind: Kind) -> str:
    """The verdict on a difference (positive: A better) and its standard error."""
    if math.isnan(difference) or math.isnan(se):
        return PENDING
    if kind == "drops":
        difference = -difference
    if difference > 2 * se:
        return HOLDS
    if difference < -2 * se:
        return FAILS
    return HOLDS if kind == "matches" else NOISE


def combine(verdicts: Iterable[str]) -> str:
    """A claim's verdict from its checks': pending ones are left out."""
    evaluated = [v for v in verdicts if v != PENDING]
    if not evaluated:
        return PENDING
    if FAILS in evaluated:
        return FAILS
    return HOLDS if all(v == HOLDS for v in evaluated) else NOISE


def difference(a: Summary, b: Summary, lower_is_better: bool) -> tuple[float, float]:
    """(A - B signed so that positive is better, its standard error); nan below two seeds."""
    if a.n < 2 or b.n < 2:
        return math.nan, math.nan
    sign = -1.0 if lower_is_better else 1.0
    return sign * (a.mean - b.mean), math.hypot(a.se, b.se)


def paper_claims(exp: Experiment, results: Mapping[str, Any]) -> list[Claim]:
    """Every claim whose studies and variants this experiment has (in the paper's order)."""
    have = {s.id for s in exp.studies}
    variants = set(exp.variants)

    def compare(
        text: str,
        source: str,
        kind: Kind,
        pairs: Sequence[tuple[str, str]],
        studies: Sequence[str],
        metrics: Sequence[str],
    ) -> Claim | None:
        checks = [
            _compare(exp, results, study, a, b, metric, kind)
            for study in studies
            if study in have
            for a, b in pairs
            if {a, b} <= variants
            for metric in metrics
            if metric in exp.study(study).metrics
        ]
        return Claim(text, source, tuple(checks)) if checks else None

    task12 = ("gmf", "neumf", "sasrec")
    ranking = ("hr@10", "ndcg@10")
    found = [
        compare(
            "MGQE matches or beats full embeddings (FE) on GMF, NeuMF and SASRec",
            "Tables 3-4, Sec. 5.6.5",
            "matches",
            [("MGQE", "FE")],
            task12,
            ranking,
        ),
        _size_claim(exp, results, task12),
        compare(
            "LRF has a significant performance drop",
            "Table 3, Sec. 5.6.1",
            "drops",
            [("LRF", "FE")],
            ("gmf", "neumf"),
            ranking,
        ),
        compare(
            "Quantized embeddings (SQ, DPQ, MGQE) improve over FE on GMF",
            "Table 3, Sec. 5.6.1",
            "beats",
            [("SQ", "FE"), ("DPQ", "FE"), ("MGQE", "FE")],
            ("gmf",),
            ranking,
        ),
        compare(
            "MGQE outperforms DPQ (RQ2)",
            "Tables 3-5, Sec. 5.6.5",
            "beats",
            [("MGQE", "DPQ")],
            (*task12, "ratings", "item_item"),
            ("hr@10", "rmse"),
        ),
        compare(
            "On regression, DPQ and MGQE improve RMSE over FE",
            "Table 5, Sec. 5.6.3",
            "beats",
            [("DPQ", "FE"), ("MGQE", "FE")],
            ("ratings", "item_item"),
            ("rmse",),
        ),
        compare(
            "On regression, SQ has a performance drop",
            "Table 5, Sec. 5.6.3",
            "drops",
            [("SQ", "FE")],
            ("ratings", "item_item"),
            ("rmse",),
        ),
        compare(
            "Shared centroids (MGQE's default) are the best MGQE variant",
            "Table 6, Sec. 5.7",
            "beats",
            [("MGQE", "MGQE (unshared)"), ("MGQE", "MGQE (var D)")],
            task12,
            ranking,
        ),
        _equal_size_claim(exp, results),
        _loss_claim(exp, results),
        _genre_claim(exp, results),
    ]
    return [claim for claim in found if claim is not None]


def _compare(
    exp: Experiment,
    results: Mapping[str, Any],
    study: str,
    a: str,
    b: str,
    metric: str,
    kind: Kind,
) -> Check:
    lower = exp.study(study).lower_is_better
    scale, digits = number_format(metric)
    ours_a, ours_b = (summarize(results, study, v, metric) for v in (a, b))
    diff, se = difference(ours_a, ours_b, lower)
    paper_a, paper_b = (paper_metric(exp, study, v, metric) for v in (a, b))
    paper = "—"
    if paper_a is not None and paper_b is not None:
        sign = -1 if lower else 1
        paper = f"{paper_a:.2f} vs {paper_b:.2f} ({sign * (paper_a - paper_b):+.2f})"
    ours = f"{ours_a.text(digits, scale)} vs {ours_b.text(digits, scale)}"
    if not math.isnan(diff):
        ours += f": {scale * diff:+.{digits}f} ± {scale * se:.{digits}f}"
    return Check(f"{study} {metric}: {a} vs {b}", ours, paper, verdict(diff, se, kind))


def _size_claim(
    exp: Experiment, results: Mapping[str, Any], studies: Sequence[str]
) -> Claim | None:
    checks = []
    for study in studies:
        if study not in {s.id for s in exp.studies} or "MGQE" not in exp.variants:
            continue
        ours = summarize(results, study, "MGQE", "size_pct_of_full")
        paper = paper_metric(exp, study, "MGQE", "size_pct")
        if not ours.n or paper is None:
            verdict_ = PENDING
        else:
            verdict_ = HOLDS if abs(ours.mean - paper) <= SIZE_TOLERANCE else FAILS
        checks.append(
            Check(
                f"{study}: MGQE size % of FE",
                "—" if not ours.n else f"{ours.mean:.1f}%",
                "—" if paper is None else f"{paper:g}%",
                verdict_,
            )
        )
    if not checks:
        return None
    return Claim(
        f"MGQE does so at about 20% of FE's model size (holds: within {SIZE_TOLERANCE:g} "
        "points of the paper's size for that model; Sizes explains the differences)",
        "Tables 3-4, abstract",
        tuple(checks),
    )


def _equal_size_claim(exp: Experiment, results: Mapping[str, Any]) -> Claim | None:
    """Fig. 6: at each size where another method has a point inside MGQE's size range, MGQE's
    value interpolated there (log size) against that method's."""
    mgqe = next((s for s in exp.size_series if s.label.startswith("MGQE")), None)
    if mgqe is None:
        return None
    checks = []
    for study in exp.size_studies:
        lower = exp.study(study).lower_is_better
        metric = exp.study(study).metrics[0]
        scale, digits = number_format(metric)
        curve = size_points(exp, results, study, mgqe.variants)
        for series in exp.size_series:
            if series is mgqe:
                continue
            verdicts, details = [], []
            for size, other in size_points(exp, results, study, series.variants):
                ours = interpolate(curve, size)
                if ours is None:
                    continue
                diff, se = difference(ours, other, lower)
                verdicts.append(verdict(diff, se, "beats"))
                if not math.isnan(diff):
                    details.append(
                        f"{size:.1f}%: {scale * diff:+.{digits}f} ± {scale * se:.{digits}f}"
                    )
            ours_text = "; ".join(details) or "no comparable points yet"
            checks.append(
                Check(
                    f"{study} {metric}: MGQE vs {series.label} at equal size",
                    ours_text,
                    "MGQE best",
                    combine(verdicts),
                )
            )
    if not checks:
        return None
    return Claim(
        "At the same model size MGQE performs best (MGQE minus the other method at each of its "
        "sizes inside MGQE's range)",
        "Fig. 6, Sec. 5.6.4",
        tuple(checks),
    )


def interpolate(curve: Sequence[tuple[float, Summary]], size: float) -> Summary | None:
    """The curve's summary at `size`, linear in log size between its neighbouring points (mean
    and standard error interpolated alike); None outside the curve's range."""
    for (x0, s0), (x1, s1) in itertools.pairwise(curve):
        if x0 <= size <= x1:
            t = 0.0 if x1 == x0 else (math.log(size) - math.log(x0)) / (math.log(x1) - math.log(x0))
            n = min(s0.n, s1.n)
            se = (1 - t) * s0.se + t * s1.se
            return Summary((1 - t) * s0.mean + t * s1.mean, se * math.sqrt(n), n)
    if curve and curve[0][0] == size:
        return curve[0][1]
    return None


def _loss_claim(exp: Experiment, results: Mapping[str, Any]) -> Claim | None:
    if not {"FE", "MGQE"} <= set(exp.loss_variants):
        return None
    checks = []
    for study in exp.loss_studies:
        fe, mgqe = (loss_curve_mean(results, study, v) for v in ("FE", "MGQE"))
        common = sorted(set(fe.curve) & set(mgqe.curve))
        # The first epoch is left out where there are later ones (its first windows are where
        # freshly initialised codes differ most, and the paper's curves are read beyond them).
        after = [step for step in common if step > fe.first_epoch_steps] or common
        if not after:
            checks.append(
                Check(f"{study}: MGQE vs FE training loss", "no curves yet", "follows", PENDING)
            )
            continue
        gaps = [abs(mgqe.curve[s] - fe.curve[s]) / fe.curve[s] for s in after]
        worst = max(range(len(gaps)), key=gaps.__getitem__)
        last = common[-1]
        ours = (
            f"largest gap {100 * gaps[worst]:.1f}% (step {after[worst]:,}); last point "
            f"(step {last:,}) FE {fe.curve[last]:.4f} vs MGQE {mgqe.curve[last]:.4f} "
            f"(seeds {fe.seeds}, {mgqe.seeds})"
        )
        ok = gaps[worst] <= LOSS_TOLERANCE
        checks.append(
            Check(f"{study}: MGQE vs FE training loss", ours, "follows", HOLDS if ok else FAILS)
        )
    if not checks:
        return None
    return Claim(
        f"MGQE's training loss closely follows FE's (holds: the mean curves stay within "
        f"{100 * LOSS_TOLERANCE:g}% of FE's after the first epoch, or in it when there is one)",
        "Fig. 7",
        tuple(checks),
    )


def genre_ratios(matrix: Sequence[Sequence[float | None]]) -> tuple[float, float, float]:
    """(mean diagonal, mean off-diagonal, their ratio) of a genre x genre matrix."""
    diagonal = [v for i, row in enumerate(matrix) if (v := row[i]) is not None]
    off = [v for i, row in enumerate(matrix) for j, v in enumerate(row) if i != j and v is not None]
    if not diagonal or not off:
        return math.nan, math.nan, math.nan
    inside, between = statistics.fmean(diagonal), statistics.fmean(off)
    return inside, between, inside / between if between > 0 else math.nan


def _genre_claim(exp: Experiment, results: Mapping[str, Any]) -> Claim | None:
    if not {"SQ", "MGQE"} <= set(exp.code_variants):
        return None
    runs = results.get("code_figure", {}).get("runs", {}).values()

    def over_seeds(variant: str, pick: Callable[[tuple[float, float, float]], float]) -> Summary:
        values = [pick(genre_ratios(r["matrix"])) for r in runs if r["variant"] == variant]
        values = [v for v in values if not math.isnan(v)]
        if not values:
            return Summary(math.nan, math.nan, 0)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return Summary(statistics.fmean(values), std, len(values))

    checks = []
    for variant in ("SQ", "MGQE"):
        ratio = over_seeds(variant, lambda r: r[2])
        diff, se = difference(ratio, Summary(1.0, 0.0, max(ratio.n, 2)), False)
        checks.append(
            Check(
                f"{variant}: diagonal / off-diagonal",
                f"{ratio.text(3)} (seeds: {ratio.n})",
                "> 1",
                verdict(diff, se, "beats"),
            )
        )
    sq, mgqe = (over_seeds(v, lambda r: r[1]) for v in ("SQ", "MGQE"))
    diff, se = difference(mgqe, sq, True)
    checks.append(
        Check(
            "off-diagonal shared positions: MGQE vs SQ",
            f"{mgqe.text(2)} vs {sq.text(2)}",
            "MGQE much lower",
            verdict(diff, se, "beats"),
        )
    )
    sq, mgqe = (over_seeds(v, lambda r: r[2]) for v in ("SQ", "MGQE"))
    diff, se = difference(mgqe, sq, False)
    checks.append(
        Check(
            "ratio: MGQE vs SQ",
            f"{mgqe.text(3)} vs {sq.text(3)}",
            "MGQE higher",
            verdict(diff, se, "beats"),
        )
    )
    return Claim(
        "Codes separate genres: both SQ and MGQE share more code positions within a genre than "
        "between genres, MGQE much less between genres than SQ",
        "Fig. 8",
        tuple(checks),
    )


def number_format(metric: str) -> tuple[float, int]:
    """(scale, decimals) a metric is shown with: HR and NDCG in percent as in the paper."""
    return (100.0, 2) if metric.startswith(("hr@", "ndcg@")) else (1.0, 4)


def claims_section(exp: Experiment, results: Mapping[str, Any]) -> list[str]:
    """The report's Claims section: the rule, then a table per claim."""
    claims = paper_claims(exp, results)
    if not claims:
        return []
    lines = ["## Claims", "", " ".join(__doc__.split("\n\n", 1)[1].split()), ""]
    lines += [
        "HR@10 and NDCG@10 in percent; ours are mean ± standard error over the finished seeds "
        "(seed count where shown), then the difference (positive: the first method is better) ± "
        "its standard error.",
        "",
    ]
    for number, claim in enumerate(claims, start=1):
        lines += [
            f"### {number}. {claim.text} ({claim.source}): **{claim.verdict}**",
            "",
            "| check | ours | paper | verdict |",
            "|---|---|---|---|",
        ]
        lines += [f"| {c.what} | {c.ours} | {c.paper} | {c.verdict} |" for c in claim.checks]
        lines.append("")
    return lines

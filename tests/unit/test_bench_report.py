"""The quality section marks a gap or a feasibility disagreement with the exact optimum, so the
smoke test (which rejects ``**NO**``) fails on either."""

from __future__ import annotations

from bench import quality, report_quality
from bench.quality import ExactResult, Outcome, QualityResult, ShapeExact


def _result(*outcomes: Outcome) -> QualityResult:
    shape = ShapeExact("greedy-trap", "all-to-all", list(outcomes))
    exact = ExactResult(target=len(outcomes), time_limit_s=1.0, shapes=[shape])
    return QualityResult(exact=exact, baselines=[], streams=[], nvlink=[])


def test_a_gap_is_marked_and_misses_the_target() -> None:
    q = _result(Outcome(0, "equal"), Outcome(1, "gap", "(0, 6400.0)", "(0, 3240.0)"))
    text = report_quality._exact(q)
    assert "**NO**" in text
    assert "| greedy-trap | all-to-all | 1 | (0, 6400.0) | (0, 3240.0) |" in text
    assert report_quality.summary_rows(q)[0][2] == "**MISS**"


def test_a_feasibility_disagreement_is_marked() -> None:
    q = _result(Outcome(0, "equal"), Outcome(1, "mismatch", "infeasible", "(0, 10.0)"))
    assert "**NO**" in report_quality._exact(q)
    assert not q.exact.ok


def test_no_gap_passes() -> None:
    q = _result(Outcome(0, "equal"), Outcome(1, "infeasible"))
    assert "**NO**" not in report_quality._exact(q)
    assert q.exact.ok
    assert report_quality.summary_rows(q)[0][2] == "**PASS**"


def test_compare_one_reports_equal_on_the_known_greedy_trap() -> None:
    # An HGX node and two trays, 4-GPU replicas of one role and 1-GPU replicas of the other.
    for seed in range(3):
        outcome = quality.compare_one("greedy-trap", quality.Pattern.ALL_TO_ALL, seed, 30.0)
        assert outcome.kind in ("equal", "infeasible"), outcome

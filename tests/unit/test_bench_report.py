"""The quality section marks a gap or a feasibility disagreement with the exact optimum, so the
smoke test (which rejects ``**NO**``) fails on either."""

from __future__ import annotations

from bench import quality, report_quality
from bench.quality import ExactResult, Outcome, QualityResult, ShapeExact
from bench.stream import StrategyRun, StreamResult


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


def _stream(seed: int, placed: dict[str, int], served: dict[str, int]) -> StreamResult:
    runs = [StrategyRun(name, placed=n, gpu_events=served[name]) for name, n in placed.items()]
    return StreamResult("mix", seed, 10, 80, 100, (20, 70), {}, runs)


def test_a_stream_where_shorthop_places_fewer_misses_the_streams_target() -> None:
    q = _result(Outcome(0, "equal"))
    served = {"shorthop": 1_000, "first-fit": 1_010, "best-fit": 990, "tas": 900}
    q.streams = [_stream(1, {"shorthop": 5, "first-fit": 5, "best-fit": 4, "tas": 5}, served)]
    q.survey = [
        _stream(2, {"shorthop": 7, "first-fit": 6, "best-fit": 6, "tas": 7}, served),
        _stream(3, {"shorthop": 6, "first-fit": 6, "best-fit": 8, "tas": 6}, served),
    ]
    label, measured, verdict = report_quality.summary_rows(q)[-1]
    assert label.startswith("Streams with departures")
    assert measured.startswith("more in 1, as many in 1, fewer in 1 of 3 streams (by at most 2)")
    assert "0.990–0.990× first-fit's" in measured
    assert verdict == "**MISS**"
    survey = report_quality._survey(1, q.streams + q.survey)
    assert "the 1 above and 2 more" in survey
    assert "| mix, seed 3 | 6 / 6 / 8 / 6 | 0.990 / 1.010 |" in survey


def test_streams_where_shorthop_never_places_fewer_pass() -> None:
    q = _result(Outcome(0, "equal"))
    served = {"shorthop": 500, "first-fit": 500, "best-fit": 500, "tas": 500}
    q.streams = [_stream(1, {"shorthop": 5, "first-fit": 5, "best-fit": 5, "tas": 6}, served)]
    assert report_quality.summary_rows(q)[-1][2] == "**PASS**"


def test_only_quality_replaces_the_summary_rows_of_its_section() -> None:
    # ``--only quality`` must not leave the summary saying what an earlier run measured: the
    # rows from the exact comparison to the streams are made again, the others kept.
    q = _result(Outcome(0, "equal"), Outcome(1, "gap", "(0, 6400.0)", "(0, 3240.0)"))
    text = "\n".join(
        [
            "## Summary: targets vs measured",
            "",
            "| Target (ARCHITECTURE.md §7) | Measured | Status |",
            "| :-- | :-- | :-: |",
            "| Plan p50 ≤ 20 ms at 10,000 nodes | 78.5 ms | **MISS** |",
            "| Cost equal to the exact optimum on every small instance | old | **PASS** |",
            "| Streams with departures: an old row | old | **PASS** |",
            "| E2E: shorthop pods bound/s ≥ 1.0× kube-scheduler's | 0.81× | **MISS** |",
            "",
            "## 1. Topology",
        ]
    )
    out = report_quality.replace_summary_rows(text, q)
    lines = out.split("\n")
    assert "| Plan p50 ≤ 20 ms at 10,000 nodes | 78.5 ms | **MISS** |" in lines
    assert lines[-3].startswith("| E2E:")
    assert lines[-1] == "## 1. Topology"
    assert "old" not in out
    label, measured, verdict = report_quality.summary_rows(q)[0]
    assert f"| {label} | {measured} | {verdict} |" in lines
    assert verdict == "**MISS**"


def test_a_summary_without_the_sections_rows_is_left_alone() -> None:
    q = _result(Outcome(0, "equal"))
    text = "## Summary\n\n| Target | Measured | Status |\n| :-- | :-- | :-: |\n| E2E: x | y | z |\n"
    assert report_quality.replace_summary_rows(text, q) == text

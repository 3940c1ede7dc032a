"""docs/reliability.md's API-server section (chaos/report.py): every restart step and every
failing-request round is a row, with the operator restarts and violations it had."""

from __future__ import annotations

from chaos import report


def test_the_api_server_section_has_a_row_per_restart_step_and_per_round() -> None:
    data = {
        "scale": "full",
        "restart_steps": [
            {
                "step": 0,
                "change": "create",
                "restarted": "etcd",
                "outage_s": 1.5,
                "converged_after_restart_s": 0.2,
                "operator_restarts": 0,
                "violations": [],
            },
        ],
        "proxy_plan": {"deployment": "2 prefill + 2 decode"},
        "proxy_rounds": [
            {
                "round": 0,
                "deployments": 4,
                "requests": 150,
                "expected_failing_share": 0.2,
                "failed_share": 0.21,
                "reconcile_errors": {"http-0": 2, "http-503": 3},
                "placed_s": 4.0,
                "changed_s": 1.0,
                "collected_s": 2.0,
                "operator_restarts": [],
                "violations": [],
            },
            {
                "round": 1,
                "deployments": 8,
                "requests": 300,
                "expected_failing_share": 0.3,
                "failed_share": 0.29,
                "reconcile_errors": {},
                "placed_s": 9.0,
                "changed_s": 2.0,
                "collected_s": 3.0,
                "operator_restarts": [1],
                "violations": ["a0 is missing"],
            },
        ],
        "proxy_seconds": 200.0,
    }
    lines = report._apiserver(data)
    rows = [line for line in lines if line.startswith("| ")]
    assert "| 0 | create | etcd | 1.5 | 0.2 | 0 | 0 |" in rows
    assert "| 0 | 4 | 150 | 0.2 / 0.21 | 5 | 4.0 | 1.0 | 2.0 | 0 | 0 |" in rows
    assert "| 1 | 8 | 300 | 0.3 / 0.29 | 0 | 9.0 | 2.0 | 3.0 | 1 | 1 |" in rows
    assert "| proxy_seconds | 200.0 |" in rows
    assert not any("proxy_rounds" in line for line in lines)

"""An independent policy scanner (kube-score, built from source at a pinned version by
``make controlplane``) on the chart rendered with every optional feature on reports nothing but
the deliberate choices listed, with why, in charts/shorthop/README.md ("Policy scanners")."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.controlplane import components
from tests.helm import CHART, MAJORS, Helm, helm_for

README = CHART / "README.md"
EVERYTHING = [
    "--set", "networkPolicy.enabled=true,nodeAgent.enabled=true",
    "--set", "metrics.serviceMonitor.enabled=true,grafana.dashboard.enabled=true",
    "--set-json",
    'networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":'
    '{"kubernetes.io/metadata.name":"monitoring"}}}]',
]  # fmt: skip
Finding = tuple[str, str, str]  # (check id, object kind, summary)


@pytest.fixture(scope="module", params=MAJORS, ids=[f"helm{m}" for m in MAJORS])
def helm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    major: int = request.param
    return helm_for(
        major, tmp_path_factory.mktemp(f"helm{major}"), components.selected().kubernetes
    )


def kube_score() -> str:
    path = components.binary_path("kube-score")
    if not components.is_current(components.KUBE_SCORE, "kube-score"):
        pytest.fail(f"no kube-score at {path}: run `make controlplane` to build it")
    return str(path)


def scan(manifests: str, kubernetes: str) -> set[Finding]:
    """kube-score's findings (every check below full marks) on ``manifests``."""
    minor = ".".join(kubernetes.lstrip("v").split(".")[:2])
    result = subprocess.run(
        [kube_score(), "score", "--output-format", "json", f"--kubernetes-version=v{minor}", "-"],
        input=manifests, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    # Exit status 1 means "something scored below OK"; anything else is a failure to run.
    assert result.returncode in (0, 1), result.stderr
    found: set[Finding] = set()
    objects: list[dict[str, Any]] = json.loads(result.stdout)
    for obj in objects:
        for check in obj["checks"]:
            if check.get("skipped") or check["grade"] >= 10:
                continue
            for comment in check.get("comments") or [{"summary": check["check"]["name"]}]:
                found.add((check["check"]["id"], obj["type_meta"]["kind"], comment["summary"]))
    return found


def documented() -> set[Finding]:
    """The README's "Policy scanners" table, one finding per object kind it names."""
    text = README.read_text().split("## Policy scanners", 1)[1].split("\n## ", 1)[0]
    out: set[Finding] = set()
    for row in text.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        check, objects, finding = cells[0].strip("`"), cells[1], cells[2]
        for kind in re.findall(r"\b(Deployment|DaemonSet|Service|NetworkPolicy)\b", objects):
            out.add((check, kind, finding))
    return out


def test_the_scanner_reports_only_the_documented_choices(helm: Helm) -> None:
    manifests = yaml.safe_dump_all(helm.template(*EVERYTHING))
    found = scan(manifests, helm.kube_version)
    allowed = documented()
    assert allowed, "charts/shorthop/README.md has no scanner exceptions table"
    assert found - allowed == set(), "undocumented findings (fix them or document why)"
    assert allowed - found == set(), "documented findings the scanner no longer reports"


def test_the_scanner_check_has_teeth(helm: Helm, tmp_path: Path) -> None:
    """A finding the README does not list fails: a privileged container is reported."""
    docs = helm.template(*EVERYTHING)
    for doc in docs:
        if doc["kind"] == "Deployment":
            doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = True
    found = scan(yaml.safe_dump_all(docs), helm.kube_version)
    assert {f for f in found if f[0] == "container-security-context-privileged"} - documented()

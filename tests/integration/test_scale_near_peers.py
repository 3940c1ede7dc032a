"""Scale-out, scale-down and restarts of a prefill/decode deployment on NVL72 racks, run by the
real operator against the real API server, for both traffic patterns (issue 15, item 5):

- ``paired``: the pairs of replicas that stay never change (the status and what the running pods
  were told in ``SHORTHOP_PEERS`` agree), new replicas pair with new or least-loaded peers, and
  the pairing is read back from the cluster after an operator restart;
- ``all-to-all``: replicas that stay are not moved;
- both: new replicas land in the NVLink domain where the deployment runs when it has room, and an
  event says why not when it has none.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from shorthop.topology import fake

from tests import kube
from tests import operator_harness as oh
from tests.plan_cli import run_plan

pytestmark = pytest.mark.cluster
RACKS = fake.ClusterShape(nvl72_racks=2, trays_per_rack=18)  # 4 GPUs per tray, a clique per rack
CLIQUE = "nvidia.com/gpu.clique"
ROLES = [("prefill", 2, 4, 4), ("decode", 2, 8, 4)]  # decode: 2 pods of 4 GPUs per replica


@pytest.fixture(scope="module")
def operator(
    cluster: kube.Cluster, infd_crd: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[oh.OperatorProcess]:
    with oh.leading_operator(cluster, tmp_path_factory.mktemp("operator"), "sc") as op:
        yield op


@pytest.fixture
def ns(cluster: kube.Cluster) -> Iterator[str]:
    with cluster.namespace("sc") as name:
        yield name


def _create(cluster: kube.Cluster, ns: str, pool: str, pattern: str) -> None:
    traffic = [{"from": "prefill", "to": "decode", "weight": 1.0, "pattern": pattern}]
    doc = oh.deployment("llm", ns, pool, ROLES, traffic=traffic)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))


def _scale(cluster: kube.Cluster, ns: str, decode: int) -> None:
    patch = [{"op": "replace", "path": "/spec/roles/1/replicas", "value": decode}]
    cluster.kubectl("patch", "infd", "llm", "-n", ns, "--type=json", "-p", json.dumps(patch))


def _settled(cluster: kube.Cluster, ns: str, decode: int) -> dict[str, Any] | None:
    """The status of the current generation, every pod placed and ready; None until then."""
    pods = 2 + 2 * decode
    body = oh.get_infd(cluster, ns, "llm")
    status = body.get("status") or {}
    live = [p for p in oh.pods(cluster, ns, "llm") if not p.metadata.deletion_timestamp]
    done = (
        status.get("phase") == "Running"
        and status.get("observedGeneration") == body["metadata"]["generation"]
        and status.get("ready") == f"{pods}/{pods}"
        and len(live) == pods
    )
    return body if done else None


def _scored(cluster: kube.Cluster, ns: str) -> dict[str, Any] | None:
    """The body once its placement score is the score of the placement it reports."""
    body = oh.get_infd(cluster, ns, "llm")
    status = body.get("status") or {}
    score = status.get("placementScore") or {}
    return body if score.get("current") == (status.get("cost") or {}).get("total") else None


def _wait(cluster: kube.Cluster, ns: str, decode: int) -> dict[str, Any]:
    kube.wait_for(
        f"llm settled with {decode} decode replicas",
        lambda: _settled(cluster, ns, decode),
        timeout=120,
    )
    # A scale changes the deployment: its score is recomputed at the next idle visit, not once
    # the score's rate limit (60 s) has passed.
    return kube.wait_for(
        "the placement score of the new placement", lambda: _scored(cluster, ns), timeout=40
    )


def _placed(cluster: kube.Cluster, ns: str) -> dict[str, tuple[str, str, str]]:
    """Pod name -> (uid, node, GPUs) of the deployment's live pods."""
    return {
        p.metadata.name: (
            p.metadata.uid,
            p.spec.node_name,
            p.metadata.annotations["shorthop.io/gpus"],
        )
        for p in oh.pods(cluster, ns, "llm")
        if not p.metadata.deletion_timestamp
    }


def _replica(dns: str) -> str:
    """``llm-decode-2-0.llm-decode.<ns>.svc`` -> ``decode-2``."""
    role, replica, _pod = dns.split(".", maxsplit=1)[0].removeprefix("llm-").rsplit("-", 2)
    return f"{role}-{replica}"


def _told(cluster: kube.Cluster, ns: str) -> dict[str, set[str]]:
    """Replica -> the peers its pods were told in ``SHORTHOP_PEERS`` (every pod of a replica is
    told the same)."""
    told: dict[str, set[str]] = {}
    for pod in oh.pods(cluster, ns, "llm"):
        if pod.metadata.deletion_timestamp:
            continue
        labels = pod.metadata.labels
        replica = f"{labels['shorthop.io/role']}-{labels['shorthop.io/replica']}"
        env = {e.name: e.value or "" for e in pod.spec.containers[0].env}
        peers = {_replica(d) for d in env["SHORTHOP_PEERS"].split(",") if d}
        assert told.setdefault(replica, peers) == peers, f"{pod.metadata.name} told otherwise"
    return told


def _status_pairs(status: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(prefill replica, decode replica) -> tier, from ``status.kvTransfers``."""
    return {(t["prefill"], t["decode"]): t["tier"] for t in status["kvTransfers"]}


def _replica_tiers(status: dict[str, Any]) -> dict[str, str]:
    return {f"{r['role']}-{r['replica']}": r["tier"] for r in status["replicas"]}


def _cliques(cluster: kube.Cluster, nodes: set[str]) -> dict[str, str]:
    return {n: cluster.core.read_node(n).metadata.labels[CLIQUE] for n in nodes}


def _check_told_matches_status(told: dict[str, set[str]], pairs: set[tuple[str, str]]) -> None:
    """What the pods were told is true: every pair a pod names is in the status, and each
    decode replica (the larger side: one peer each) was told exactly its pair."""
    for replica, peers in told.items():
        for peer in peers:
            pair = (replica, peer) if replica.startswith("prefill") else (peer, replica)
            assert pair in pairs, f"{replica} was told {peer}, status pairs {sorted(pairs)}"
    for prefill, decode in pairs:
        assert told[decode] == {prefill}, (decode, told[decode], sorted(pairs))


def test_paired_scale_out_keeps_pairs_and_lands_in_the_rack(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    with oh.node_pool(cluster, RACKS, operator=operator) as (pool, _):
        _create(cluster, ns, pool, "paired")
        status = _wait(cluster, ns, 2)["status"]
        before = _status_pairs(status)
        assert set(before.values()) == {"nvlink-domain"}, before
        assert Counter(p for p, _ in before) == {"prefill-0": 1, "prefill-1": 1}
        placed = _placed(cluster, ns)
        (home,) = set(_cliques(cluster, {node for _, node, _ in placed.values()}).values())
        told_before = _told(cluster, ns)
        _check_told_matches_status(told_before, set(before))
        tiers_before = _replica_tiers(status)

        _scale(cluster, ns, 4)
        status = _wait(cluster, ns, 4)["status"]
        after = _status_pairs(status)
        # Existing pairs never change, and keep their tier.
        for pair, tier in before.items():
            assert after.get(pair) == tier, (pair, after)
        # One peer per decode replica; the new ones pair with the least-loaded prefill replicas.
        assert sorted(d for _, d in after) == [f"decode-{r}" for r in range(4)]
        assert Counter(p for p, _ in after) == {"prefill-0": 2, "prefill-1": 2}
        # The rack had room: every new pod is in the deployment's NVLink domain.
        now = _placed(cluster, ns)
        assert set(_cliques(cluster, {node for _, node, _ in now.values()}).values()) == {home}
        assert set(after.values()) == {"nvlink-domain"}
        assert status["placedAway"] == ""
        assert not [e for e in oh.events(cluster, ns, "llm") if e.reason == "PlacedAway"]
        tiers = _replica_tiers(status)
        for replica, tier in tiers_before.items():
            assert tiers[replica] == tier, (replica, tiers)
        assert {tiers[f"decode-{r}"] for r in range(4)} == {"nvlink-domain"}  # 2 trays each
        # Untouched pods stayed where they were, and what they were told is still true.
        for name, where in placed.items():
            assert now[name] == where, name
        told = _told(cluster, ns)
        for replica, peers in told_before.items():
            assert told[replica] == peers
        _check_told_matches_status(told, set(after))


def test_all_to_all_scale_out_moves_nothing_and_matches_shorthop_plan(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str, tmp_path: Path
) -> None:
    with oh.node_pool(cluster, RACKS, operator=operator) as (pool, nodes):
        _create(cluster, ns, pool, "all-to-all")
        _wait(cluster, ns, 2)
        placed = _placed(cluster, ns)
        (home,) = set(_cliques(cluster, {node for _, node, _ in placed.values()}).values())

        _scale(cluster, ns, 4)
        body = _wait(cluster, ns, 4)
        status = body["status"]
        now = _placed(cluster, ns)
        for name, where in placed.items():
            assert now[name] == where, name
        assert set(_cliques(cluster, {node for _, node, _ in now.values()}).values()) == {home}
        # Every prefill GPU with every decode GPU, all inside the rack.
        assert status["tiers"] == {"nvlink-domain": (2 * 4) * (4 * 8)}
        (edge,) = status["kvTraffic"]
        assert edge["replicaPairs"] == {"nvlink-domain": 2 * 4}
        assert status["kvTransfers"] == []
        # ``shorthop plan`` of the scaled deployment on the pool's nodes (the deployment's own
        # pods left out, as the score counts them free) gives the achievable cost and the tiers.
        snapshot = tmp_path / "cluster.yaml"
        items = [
            cluster.core.api_client.sanitize_for_serialization(cluster.core.read_node(n))
            for n in nodes
        ]
        snapshot.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))
        manifest = tmp_path / "llm.yaml"
        manifest.write_text(
            yaml.safe_dump({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")})
        )
        run = run_plan(snapshot, manifest)
        assert run.status == 0, run.stderr
        plan = json.loads(run.stdout)
        assert plan["tiers"] == status["tiers"]
        score = status["placementScore"]
        assert score["achievable"] == pytest.approx(plan["cost"]["total"], abs=1e-3)
        assert score["current"] == status["cost"]["total"] == score["achievable"]


def _fill(cluster: kube.Cluster, ns: str, clique: str, pool: str) -> list[str]:
    """Background pods holding every GPU of ``clique``'s trays the deployment does not use."""
    used = Counter()
    for _, node, gpus in _placed(cluster, ns).values():
        used[node] += len(gpus.split(","))
    made = []
    for node in cluster.core.list_node(label_selector=f"{CLIQUE}={clique}").items:
        name = node.metadata.name
        free = 4 - used[name]
        if free <= 0 or not name.startswith(pool):
            continue
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"bg-{name}", "namespace": ns},
            "spec": {
                "nodeName": name,
                "tolerations": [{"key": oh.POOL_TAINT, "operator": "Exists"}],
                "containers": [
                    {
                        "name": "c",
                        "image": "busybox",
                        "resources": {"limits": {"nvidia.com/gpu": str(free)}},
                    }
                ],
            },
        }
        cluster.core.create_namespaced_pod(ns, pod)
        made.append(name)
    return made


def test_scale_out_with_no_room_in_the_rack_says_why(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    with oh.node_pool(cluster, RACKS, operator=operator) as (pool, _):
        _create(cluster, ns, pool, "paired")
        status = _wait(cluster, ns, 2)["status"]
        before = _status_pairs(status)
        placed = _placed(cluster, ns)
        (home,) = set(_cliques(cluster, {node for _, node, _ in placed.values()}).values())
        _fill(cluster, ns, home, pool)

        _scale(cluster, ns, 4)
        status = _wait(cluster, ns, 4)["status"]
        after = _status_pairs(status)
        for pair, tier in before.items():
            assert after.get(pair) == tier
        now = _placed(cluster, ns)
        new = {n: node for n, (_, node, _) in now.items() if n not in placed}
        assert set(new) == {f"llm-decode-{r}-{p}" for r in (2, 3) for p in (0, 1)}
        assert home not in set(_cliques(cluster, set(new.values())).values())
        oh.wait_event(cluster, ns, "llm", "PlacedAway", contains=home)
        (event,) = [e for e in oh.events(cluster, ns, "llm") if e.reason == "PlacedAway"]
        assert "decode-2" in event.message
        assert "decode-3" in event.message
        assert "0 GPUs free" in event.message, event.message
        # The status says it too, as long as it holds.
        assert status["placedAway"] == event.message


def test_pairs_survive_scale_down_a_restart_and_scale_up(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str, tmp_path: Path
) -> None:
    with oh.node_pool(cluster, RACKS, operator=operator) as (pool, _):
        _create(cluster, ns, pool, "paired")
        _wait(cluster, ns, 2)
        _scale(cluster, ns, 4)
        four = _status_pairs(_wait(cluster, ns, 4)["status"])

        _scale(cluster, ns, 2)
        status = _wait(cluster, ns, 2)["status"]
        two = _status_pairs(status)
        survivors = {d for _, d in two}
        assert len(survivors) == 2
        # The survivors keep the peers they had; they were told them, and it is still true.
        for pair in two:
            assert four[pair] == two[pair], (pair, four)
        told = _told(cluster, ns)
        _check_told_matches_status(told, set(two))
        placed = _placed(cluster, ns)

        # A new operator process: the pairing is read back from the cluster.
        operator.stop()
        operator.start()
        operator.wait_leading()
        _scale(cluster, ns, 4)
        status = _wait(cluster, ns, 4)["status"]
        again = _status_pairs(status)
        for pair, tier in two.items():
            assert again.get(pair) == tier, (pair, again)
        assert Counter(p for p, _ in again) == {"prefill-0": 2, "prefill-1": 2}
        assert sorted(d for _, d in again) == sorted({d for _, d in again})
        assert len(again) == 4
        now = _placed(cluster, ns)
        for name, where in placed.items():
            assert now[name] == where, name
        _check_told_matches_status(_told(cluster, ns), set(again))

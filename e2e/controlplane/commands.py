"""The command line of each control-plane component, and the files they read: the API server's
audit policy and kube-scheduler's configuration. Every flag here exists, and none is deprecated,
on every supported Kubernetes release (kube-scheduler's client and leader-election flags are, so
they live in its configuration file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e.controlplane import components

FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"

# Metadata (who, verb, resource, namespace, name, the authorizer's decision and reason) of every
# request made with a ServiceAccount's credentials, except kube-system's (the controller-manager's
# controllers run as those, see --use-service-account-credentials, and would drown the rest).
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "userGroups": ["system:serviceaccounts:kube-system"]},
        {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
        {"level": "None"},
    ],
}


@dataclass(frozen=True)
class Paths:
    """Where one cluster's files are and which ports it listens on."""

    state_dir: Path
    ports: dict[str, int]

    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    @property
    def audit_log(self) -> Path:
        return self.state_dir / "logs" / "audit.log"

    @property
    def audit_policy(self) -> Path:
        return self.state_dir / "audit-policy.json"

    @property
    def scheduler_config(self) -> Path:
        return self.state_dir / "scheduler-config.json"

    def kubeconfig(self, stem: str) -> Path:
        return self.state_dir / ("kubeconfig" if stem == "admin" else f"{stem}.kubeconfig")


def write_configs(paths: Paths) -> None:
    """The files the commands name (before the components start)."""
    paths.audit_policy.write_text(json.dumps(AUDIT_POLICY, indent=2))
    paths.scheduler_config.write_text(json.dumps(scheduler_config(paths), indent=2))


def scheduler_config(paths: Paths) -> dict[str, Any]:
    """kube-scheduler's configuration (the default profile, so DynamicResources is on)."""
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {
            "kubeconfig": str(paths.kubeconfig("scheduler")),
            "qps": 200,
            "burst": 400,
        },
        "leaderElection": {"leaderElect": False},
    }


def command(name: str, binary: str, paths: Paths) -> list[str]:
    """The argv that starts component ``name`` from ``binary``."""
    ports, pki, state_dir = paths.ports, paths.pki, paths.state_dir
    if name == "etcd":
        client = f"http://127.0.0.1:{ports['etcd']}"
        peer = f"http://127.0.0.1:{ports['etcd-peer']}"
        return [
            binary,
            "--name=local",
            f"--data-dir={state_dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=local={peer}",
            "--listen-metrics-urls=",
            "--unsafe-no-fsync=true",
            "--quota-backend-bytes=4294967296",
            "--log-level=warn",
        ]
    if name == "kube-apiserver":
        return [
            binary,
            f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports['apiserver']}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--allow-privileged=true",
            # Owner references that block deletion need update on the owner's finalizers,
            # as on hardened clusters: the chart must grant it (tests/integration/test_chart).
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
            # The Endpoints of the `kubernetes` Service may not name a loopback address.
            "--endpoint-reconciler-type=none",
            "--max-requests-inflight=800",
            "--max-mutating-requests-inflight=400",
            f"--audit-policy-file={paths.audit_policy}",
            f"--audit-log-path={paths.audit_log}",
            "--audit-log-format=json",
            # Rotated files (audit-<time>.log) are kept: readers glob them too.
            "--audit-log-maxsize=200",
            "--audit-log-maxbackup=5",
            "--v=1",
        ]
    if name == "kube-controller-manager":
        kubeconfig = paths.kubeconfig("controller-manager")
        return [
            binary,
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['controller-manager']}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--v=1",
        ]
    if name == "kube-scheduler":
        kubeconfig = paths.kubeconfig("scheduler")
        # Client and leader-election settings live in the config file: their flags
        # (--kubeconfig, --kube-api-qps, ...) are deprecated on every supported release.
        return [
            binary,
            f"--config={paths.scheduler_config}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['scheduler']}",
            "--v=1",
        ]
    if name == "kwok":
        stages = components.cached_asset(components.KWOK, "kwok-stages.yaml")
        return [
            binary,
            f"--config={stages}",
            f"--kubeconfig={paths.kubeconfig('kwok')}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
            "--cidr=10.244.0.0/16",
            "--node-ip=10.244.255.254",
            f"--server-address=127.0.0.1:{ports['kwok']}",
            "--node-lease-duration-seconds=40",
        ]
    raise KeyError(name)

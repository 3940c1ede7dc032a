"""kopf must log in with the same credentials as the API client (a token kubeconfig, in-cluster)."""

from __future__ import annotations

import json
from pathlib import Path

from kubernetes import client
from shorthop.controller import kube
from shorthop.controller.operator import connection_info


def _token_kubeconfig(path: Path, token: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}],
                "current-context": "sa",
            }
        )
    )
    return path


def test_a_service_account_token_reaches_kopf(tmp_path: Path) -> None:
    api = kube.api_client(str(_token_kubeconfig(tmp_path / "kubeconfig", "tok-123")))
    info = connection_info(api.configuration)
    assert info.token == "tok-123"
    assert info.server == "https://127.0.0.1:6443"


def test_a_rotated_token_is_read_through_the_refresh_hook() -> None:
    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:6443"
    configuration.api_key = {"BearerToken": "Bearer old"}

    def refresh(c: client.Configuration) -> None:
        c.api_key["BearerToken"] = "Bearer new"

    configuration.refresh_api_key_hook = refresh
    assert connection_info(configuration).token == "new"


def test_client_certificates_carry_no_token() -> None:
    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:6443"
    configuration.cert_file, configuration.key_file = "/c.pem", "/k.pem"
    info = connection_info(configuration)
    assert info.token is None
    assert (info.certificate_path, info.private_key_path) == ("/c.pem", "/k.pem")

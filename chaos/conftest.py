"""Fixtures of the chaos checks (see chaos/fixtures.py)."""

from chaos.fixtures import lease_namespace, operators  # noqa: F401

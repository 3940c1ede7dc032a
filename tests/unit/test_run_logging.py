"""The operator's log handler: kopf's retry of the API server's transient 429 "storage is
(re)initializing" is INFO, every other kopf error stays ERROR."""

from __future__ import annotations

import logging

from shorthop.commands.run import QuietStorageInit


def _record(name: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_only_the_storage_initializing_retry_is_downgraded() -> None:
    quiet = QuietStorageInit()
    retry = _record(
        "kopf._cogs.clients.watching",
        logging.ERROR,
        "Request attempt #1/9 failed; will retry: GET /apis/shorthop.io/v1alpha1/x -> "
        "APITooManyRequestsError('storage is (re)initializing', {...}, status=429)",
    )
    assert quiet.filter(retry)
    assert (retry.levelno, retry.levelname) == (logging.INFO, "INFO")
    for record in (
        _record("kopf._cogs.clients.api", logging.ERROR, "Request attempt #9/9 failed; escalating"),
        _record("shorthop.reconcile", logging.ERROR, "storage is (re)initializing"),
    ):
        assert quiet.filter(record)
        assert record.levelno == logging.ERROR

"""``shorthop plan`` run on a file, in this process or as a child, and its exit held to the CLI
contract (exit 1: one clear line on stderr; exit 0/2: the plan as JSON). Used by the fuzz tests
of snapshot files (``tests/unit/test_cli_plan_fuzz.py``, ``chaos/test_fuzz.py``)."""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shorthop import cli

from tests.malformed import MINIMAL, safe_repr, where


@dataclass(frozen=True)
class PlanRun:
    status: int | None  # None: an exception escaped cli.main
    stderr: str
    error: str = ""
    stdout: str = ""


def run_plan(cluster_file: Path, deployment: Path = MINIMAL) -> PlanRun:
    """``shorthop plan`` in this process, stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main(
                [
                    "plan",
                    "--cluster",
                    str(cluster_file),
                    "--deployment",
                    str(deployment),
                    "--format",
                    "json",
                ]
            )
        except SystemExit as exc:  # argparse
            status = int(exc.code or 0)
        except Exception as exc:
            return PlanRun(
                None,
                err.getvalue(),
                f"{type(exc).__name__} at {where(exc)}: {safe_repr(str(exc), 200)}",
                out.getvalue(),
            )
    return PlanRun(status, err.getvalue(), stdout=out.getvalue())


def judge_plan(run: PlanRun) -> str:
    """The outcome of a ``shorthop plan --format json`` on a (possibly) malformed snapshot, held
    to the CLI contract; raises AssertionError for anything else: exit 1 with exactly one
    ``shorthop plan: error:`` line on stderr and nothing on stdout; exit 0 (placed) or 2
    (infeasible, with reasons) with the plan as JSON on stdout and nothing on stderr. (An exit 2
    from argparse, with its usage on stderr and no JSON, is a bad exit.)"""
    if run.status is None:
        raise AssertionError(f"exception escaped: {run.error}")
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    if "Traceback" in run.stderr:
        raise AssertionError(f"traceback on stderr: {run.stderr[-500:]}")
    if run.status == 1:
        if len(lines) != 1 or not lines[0].startswith("shorthop plan: error: "):
            raise AssertionError(f"exit 1 without one clear line: {run.stderr[:500]!r}")
        if run.stdout.strip():
            raise AssertionError(f"exit 1 with output on stdout: {run.stdout[:300]!r}")
        return "exit-1"
    if run.status in (0, 2):
        if lines:
            raise AssertionError(f"exit {run.status} with stderr: {run.stderr[:500]!r}")
        try:
            plan = json.loads(run.stdout)
        except ValueError:
            raise AssertionError(
                f"exit {run.status} without a JSON plan: {run.stdout[:300]!r}"
            ) from None
        if plan.get("feasible") is not (run.status == 0):
            raise AssertionError(f"exit {run.status} but feasible={plan.get('feasible')!r}")
        if run.status == 2 and not plan.get("reasons"):
            raise AssertionError("infeasible plan without reasons")
        return f"exit-{run.status}"  # the damage left a usable snapshot (nodes left out, ...)
    raise AssertionError(f"exit status {run.status}: {run.stderr[:500]!r}")


def plan_on_bytes(directory: Path) -> Callable[[tuple[str, bytes]], str]:
    """A Tally runner: write the file, run the CLI on it, judge the exit."""

    def run(case: tuple[str, bytes]) -> str:
        _, data = case
        path = directory / "snapshot.yaml"
        path.write_bytes(data)
        return judge_plan(run_plan(path))

    return run


def special_snapshot_paths(directory: Path) -> list[tuple[str, Path]]:
    """Paths that are not files: missing, a directory."""
    missing = directory / "missing.yaml"
    folder = directory / "folder.yaml"
    folder.mkdir(exist_ok=True)
    return [("missing", missing), ("directory", folder)]


def unreadable_snapshot(directory: Path) -> Path:
    """A snapshot file with mode 000. Readable all the same by a process with
    ``CAP_DAC_OVERRIDE`` (root, as in CI): see :func:`run_plan_without_file_override`."""
    path = directory / "unreadable.yaml"
    path.write_text("kind: Node\nmetadata: {name: n}\n")
    path.chmod(0)
    return path


# Linux capabilities that let a process read any file whatever its mode, and prctl's request
# to drop one from the bounding set (linux/capability.h, linux/prctl.h).
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2
PR_CAPBSET_DROP = 24


def drop_file_override() -> None:
    """In a child before exec: drop the capabilities that bypass file modes from the bounding
    set, so the program it runs (as root too) obeys them. Raises OSError when not permitted."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_CAPBSET_DROP, {cap}): {os.strerror(errno)}")


def run_plan_without_file_override(cluster_file: Path, deployment: Path = MINIMAL) -> PlanRun:
    """``shorthop plan`` as a child process that cannot bypass file modes (see
    :func:`drop_file_override`). Raises OSError when the capabilities cannot be dropped."""
    command = [sys.executable, "-m", "shorthop.cli", "plan", "--cluster", str(cluster_file),
               "--deployment", str(deployment), "--format", "json"]  # fmt: skip
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=120, check=False,
            preexec_fn=drop_file_override,
        )  # fmt: skip
    except subprocess.SubprocessError as exc:  # the preexec_fn failed in the child
        raise OSError(f"cannot drop CAP_DAC_OVERRIDE: {exc}") from None
    return PlanRun(result.returncode, result.stderr, stdout=result.stdout)

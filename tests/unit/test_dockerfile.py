"""operator/Dockerfile builds a small, pinned, non-root image; checked without a container engine."""

from __future__ import annotations

import pytest

from tests import dockerfile

STAGES = dockerfile.load()
FINAL = STAGES[-1]
NONROOT_UID = "65532"


def test_is_multi_stage_with_a_named_builder() -> None:
    assert len(STAGES) >= 2
    assert STAGES[0].name == "builder"
    assert FINAL.name is None or FINAL.name != "builder"


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name or "final")
def test_every_base_image_has_an_explicit_tag_that_is_not_latest(stage: dockerfile.Stage) -> None:
    image, _, digest = stage.base.partition("@")
    name, sep, tag = image.rpartition(":")
    assert sep, f"FROM {stage.base} has no tag"
    assert "/" not in tag, f"FROM {stage.base} has no tag"
    assert tag != "latest", f"FROM {stage.base} uses latest"
    assert name == "python"
    assert tag.startswith("3.11-slim")
    assert not digest or digest.startswith("sha256:")


def test_final_stage_runs_as_uid_65532() -> None:
    user = FINAL.last("USER")
    assert user is not None, "the final stage sets no USER, so it runs as root"
    uid, _, gid = user.arguments.partition(":")
    assert uid == NONROOT_UID
    assert gid in ("", NONROOT_UID)
    # The user exists in the image (tools that resolve the uid to a name do not fail).
    assert any(f"--uid {NONROOT_UID}" in run.arguments for run in FINAL.all("RUN"))


def test_final_stage_copies_only_the_virtualenv_from_the_builder() -> None:
    copies = FINAL.all("COPY") + FINAL.all("ADD")
    assert copies, "the final stage copies nothing"
    for copy in copies:
        assert copy.keyword == "COPY"
        assert copy.flags().get("from") == "builder", copy.arguments
        assert copy.operands() == ["/opt/shorthop", "/opt/shorthop"]
    env = " ".join(e.arguments for e in FINAL.all("ENV"))
    assert "PATH=/opt/shorthop/bin:" in env


def test_builder_installs_with_the_pinned_constraints() -> None:
    builder = STAGES[0]
    copied = [src for c in builder.all("COPY") for src in c.operands()[:-1]]
    assert "requirements/constraints.txt" in copied
    installs = [r.arguments for r in builder.all("RUN") if "pip install" in r.arguments]
    assert installs
    assert all("-c requirements/constraints.txt" in i for i in installs), installs
    assert "operator/shorthop" in copied


def test_entrypoint_and_cmd_are_exec_form_shorthop_run() -> None:
    entrypoint, cmd = FINAL.last("ENTRYPOINT"), FINAL.last("CMD")
    assert entrypoint is not None
    assert cmd is not None
    assert entrypoint.exec_form() == ["shorthop"]
    assert cmd.exec_form() == ["run"]


def test_build_context_keeps_what_the_builder_copies_and_nothing_else() -> None:
    patterns = dockerfile.ignore_patterns()
    sources = [src for c in STAGES[0].all("COPY") for src in c.operands()[:-1]]
    for source in sources:
        assert (dockerfile.ROOT / source).exists(), f"COPY {source}: no such path in the repo"
        assert not dockerfile.ignored(source, patterns), f"COPY {source} is in .dockerignore"
    package = dockerfile.ROOT / "operator" / "shorthop"
    modules = [p.relative_to(dockerfile.ROOT).as_posix() for p in package.rglob("*.py")]
    assert modules
    assert not [m for m in modules if dockerfile.ignored(m, patterns)]
    for heavy in (".venv", ".git", "tests", "e2e", ".cluster", "operator/shorthop/__pycache__"):
        assert dockerfile.ignored(heavy, patterns), f"{heavy} would be sent to the build context"


@pytest.mark.parametrize(
    ("text", "stages", "cmd"),
    [
        ('FROM a:1 AS b\nRUN x \\\n  y\nFROM c:2\nCMD ["z"]\n', ["b", None], ["z"]),
        ('# c\nARG V=1\nFROM a:1\n# inside\nCMD ["p", \\\n "q"]\n', [None], ["p", "q"]),
    ],
    ids=["continuation", "comments-and-global-arg"],
)
def test_reader_handles_continuations_and_comments(
    text: str, stages: list[str | None], cmd: list[str]
) -> None:
    parsed = dockerfile.parse(text)
    assert [s.name for s in parsed] == stages
    last = parsed[-1].last("CMD")
    assert last is not None
    assert last.exec_form() == cmd

"""A small Dockerfile and .dockerignore reader for tests: stages, instructions, exec-form arrays.

It understands what operator/Dockerfile uses (comments, line continuations, ``FROM … AS name``,
JSON exec form) and no more; it is not a general Dockerfile parser.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "operator" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    arguments: str  # the rest of the logical line, continuations joined

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form ENTRYPOINT/CMD; fails on shell form."""
        value = json.loads(self.arguments)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{self.keyword} is not an exec-form JSON array: {self.arguments}")
        return value

    def flags(self) -> dict[str, str]:
        """``--name=value`` options at the start of the arguments (COPY --from=builder …)."""
        out = {}
        for word in self.arguments.split():
            if not word.startswith("--"):
                break
            name, _, value = word[2:].partition("=")
            out[name] = value
        return out

    def operands(self) -> list[str]:
        """The arguments after the leading ``--`` options, split on whitespace."""
        words = self.arguments.split()
        while words and words[0].startswith("--"):
            words.pop(0)
        return words


@dataclass(slots=True)
class Stage:
    base: str  # image reference after FROM
    name: str | None  # the AS name, if any
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def logical_lines(text: str) -> list[str]:
    """Instruction lines with comments dropped and backslash continuations joined."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def parse(text: str) -> list[Stage]:
    """The build stages of a Dockerfile, in order."""
    stages: list[Stage] = []
    for line in logical_lines(text):
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        arguments = arguments.strip()
        if keyword == "FROM":
            words = [w for w in arguments.split() if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif keyword == "ARG" and not stages:
            continue  # global build arguments before the first FROM
        else:
            if not stages:
                raise ValueError(f"{keyword} before the first FROM")
            stages[-1].instructions.append(Instruction(keyword, arguments))
    return stages


def load(path: Path = DOCKERFILE) -> list[Stage]:
    return parse(path.read_text())


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether ``path`` (relative, ``/``-separated) is left out of the build context.

    Docker's rule, simplified: patterns apply in order, the last match wins, ``!`` re-includes, and
    a pattern that matches a directory matches everything under it.
    """
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for line in patterns:
        negate = line.startswith("!")
        pattern = line.removeprefix("!").strip("/")
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            result = not negate
    return result


def ignore_patterns(path: Path = DOCKERIGNORE) -> list[str]:
    return [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]

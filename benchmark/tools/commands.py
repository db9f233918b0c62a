"""How the tools record the command that produced a result file: shell-quoted, with machine
paths replaced by the environment variables that stand for them (``results/`` carries no
machine paths; the data root and cache dir do not change a result)."""
from __future__ import annotations

import shlex
from typing import Sequence

#: Flags whose value is a machine path, and the placeholder the recorded command uses instead.
PATH_FLAGS = {"--data-root": '"$BENCHMARK_DATA_ROOT"', "--cache-dir": '"$BENCHMARK_CACHE_DIR"',
              "--work-dir": '"$WORK_DIR"', "--output-dir": '"$BENCHMARK_OUTPUT_DIR"'}


def command_line(tool: str, argv: Sequence[str], drop: Sequence[str] = ()) -> str:
    """``tool`` followed by ``argv``, path flags replaced by placeholders, flags in ``drop``
    (options without a value, e.g. ``--dry-run``) left out."""
    parts, i, argv = [], 0, list(argv)
    while i < len(argv):
        a = argv[i]
        flag, eq, _ = a.partition("=")
        if flag in PATH_FLAGS:
            parts.append(f"{flag} {PATH_FLAGS[flag]}")
            i += 1 if eq else 2
            continue
        if a not in drop:
            parts.append(shlex.quote(a))
        i += 1
    return " ".join([tool, *parts])


def parse_command(tool: str, command: str) -> list[str]:
    """The arguments of a recorded ``tool ...`` command (placeholders left unexpanded)."""
    words, prefix = shlex.split(command), shlex.split(tool)
    if words[:len(prefix)] != prefix:
        raise ValueError(f"not a {tool} command: {command!r}")
    return words[len(prefix):]

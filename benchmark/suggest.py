"""The one "did you mean" helper every error message uses."""
from __future__ import annotations

import difflib
from typing import Iterable


def close_matches(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` of ``choices`` that look like ``name`` (best first)."""
    return difflib.get_close_matches(str(name), [str(c) for c in choices], n=n, cutoff=0.5)


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """``"; did you mean 'a', 'b'?"`` for the choices close to ``name``, else ``""``."""
    close = close_matches(name, choices, n)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""

"""Run one benchmark function in a fresh process: own memory, threads set before any parallel
region, ``OMP_WAIT_POLICY=PASSIVE`` (on a shared machine a descheduled OpenMP thread must not
leave its partner spinning; every contestant runs under it)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def in_child(benchmark, module: str, fn: str, *args, env: dict | None = None) -> dict:
    """``tests/benchmarks/<module>.py``'s ``fn(*args)`` in a child process, timed once by
    pytest-benchmark; returns the JSON object it prints last.  The module is imported by its
    file's folder, not as ``tests.benchmarks.<module>``: a wheel that ships a top-level ``tests``
    package (kronfluence 1.0.1 does) would shadow this project's ``tests`` folder."""
    code = (f"import json, sys; sys.path[:0] = [{str(REPO)!r}, {str(Path(__file__).resolve().parent)!r}]; "
            f"import {module} as b; "
            f"print(json.dumps(b.{fn}(*{args!r})))")
    child_env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE", **(env or {})}
    out: dict = {}

    def run():
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=child_env)
        if res.returncode != 0:
            raise RuntimeError(f"benchmark child failed:\n{res.stderr[-4000:]}")
        out.update(json.loads(res.stdout.strip().splitlines()[-1]))

    benchmark.pedantic(run, rounds=1, iterations=1)
    return out

"""The house's layering, checked by import-linter (contracts in pyproject.toml): the harness
imports no plugin, plugins are independent, and protocols / removal rules import only downward."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_are_kept():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("import-linter is not installed: pip install -e '.[dev]'")
    out = subprocess.run([exe, "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "broken" not in out.stdout.split("Contracts:")[-1].replace("0 broken", "")


def test_no_harness_module_names_a_plugin_package():
    """Besides import-linter's static graph: no harness file imports attacks/defenses/baselines
    even lazily inside a function (the registry loads built-ins by module name only)."""
    bad = []
    for path in (REPO / "benchmark").rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("from attacks", "from defenses", "from baselines",
                                    "import attacks", "import defenses", "import baselines")):
                bad.append(f"{path.relative_to(REPO)}: {stripped}")
    assert not bad, bad

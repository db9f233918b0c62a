import subprocess
import sys
import textwrap

import pytest

from benchmark.registry import ALL, Registry, RegistryError, defenses


def test_register_and_get():
    reg = Registry("things")

    @reg.register("alpha", "the first thing")
    class Alpha:
        pass

    assert reg.get("alpha") is Alpha
    assert reg.entry("alpha").description == "the first thing"
    assert reg.names() == ["alpha"]
    assert "alpha" in reg and len(reg) == 1


def test_duplicate_name_is_an_error():
    reg = Registry("things")
    reg.add("alpha", object())
    with pytest.raises(RegistryError, match="duplicate things name 'alpha'"):
        reg.add("alpha", object())


def test_unknown_name_suggests_close_matches():
    reg = Registry("things")
    reg.add("tracincp", object())
    reg.add("gas", object())
    with pytest.raises(RegistryError) as err:
        reg.get("tracinpc")
    assert "did you mean 'tracincp'" in str(err.value)
    assert "python -m benchmark list things" in str(err.value)


def test_description_defaults_to_docstring_first_line():
    reg = Registry("things")

    class Documented:
        """First line.

        More text."""

    reg.add("doc", Documented)
    assert reg.entry("doc").description == "First line."


def test_one_instance_per_kind():
    assert set(ALL) == {"datasets", "featurizers", "models", "attacks", "defenses",
                        "target_rankers", "removal_rules", "suites"}
    assert "gas" in defenses and "tracincp" in defenses


PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "tsa-plugin-demo"
version = "0.0.1"

[project.entry-points."benchmark.defenses"]
demo-loss = "tsa_plugin_demo:LossDefense"
"""

PLUGIN_MODULE = '''
"""Scores each training example by its final-model loss (a demo plugin)."""
from dataclasses import dataclass

from benchmark.training.losses import per_example_loss
from defenses.base import Defense


@dataclass
class Params:
    pass


class LossDefense(Defense):
    """Demo plugin: final-model training loss as the suspicion score."""

    Config = Params
    requires = frozenset({"model"})

    def score(self, evidence):
        model = evidence.model()
        return per_example_loss(model(evidence.train_inputs), evidence.train_labels).detach().numpy()
'''


def test_plugin_distribution_is_discovered(tmp_path):
    """Build and install a tiny plugin distribution; `list defenses` shows its defense, and a
    suite can run it by name."""
    src = tmp_path / "src"
    (src / "tsa_plugin_demo").mkdir(parents=True)
    (src / "pyproject.toml").write_text(textwrap.dedent(PLUGIN_PYPROJECT))
    (src / "tsa_plugin_demo" / "__init__.py").write_text(PLUGIN_MODULE)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--target", str(target), str(src)], check=True)
    import os

    from tests.conftest import REPO

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), str(REPO)]))
    out = subprocess.run([sys.executable, "-m", "benchmark", "list", "defenses"], env=env,
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    line = next(l for l in out.splitlines() if "demo-loss" in l)
    assert "Demo plugin: final-model training loss" in line
    assert "[plugin:tsa-plugin-demo]" in line
    out = subprocess.run(
        [sys.executable, "-m", "benchmark", "run", "--no-progress", "--scale", "smoke", "--trials", "1",
         "--defense", "demo-loss", "--method", "demo-loss", "--output-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")],
        env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "demo-loss" in out.stdout and "auprc" in out.stdout

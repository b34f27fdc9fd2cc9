"""The architecture holds: the import contracts in pyproject.toml (layers, and what each package may never import)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOT_INSTALLED = {"bench", "tests", "testkit"}  # they run from a checkout


def test_the_import_contracts_hold():
    # in a process of its own: the checker prints through its own console, which a test's captured output would
    # close under it
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache", "pyproject.toml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert f"{len(contracts)} kept, 0 broken" in result.stdout


def test_every_package_of_the_architecture_is_installed():
    """The wheel holds every package the contracts name (but the benchmarks, the tests and their support): a new
    room must not work only from a checkout."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    rooms = set(config["tool"]["importlinter"]["root_packages"]) - NOT_INSTALLED
    installed = {pattern.rstrip("*") for pattern in config["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert rooms == installed
    on_disk = {p.parent.name for p in REPO.glob("*/__init__.py")} - NOT_INSTALLED
    assert on_disk == installed, (
        "a top-level package is missing from [tool.importlinter] root_packages or the setuptools include"
    )

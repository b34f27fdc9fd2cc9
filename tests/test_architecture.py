"""The architecture holds: the import contracts in pyproject.toml (layers, and what each package may never import)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_import_contracts_hold():
    # in a process of its own: the checker prints through its own console, which a test's captured output would close under it
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache", "pyproject.toml"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 kept, 0 broken" in result.stdout

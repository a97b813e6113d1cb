"""Lint and types are part of the suite, so CI holds the code to them."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

CHECKS = {
    "ruff check": ["ruff", "check", "--no-cache", "."],
    "ruff format": ["ruff", "format", "--check", "--no-cache", "."],
    "mypy": [sys.executable, "-m", "mypy", "fetcher"],
}


@pytest.mark.parametrize("name", CHECKS)
def test_clean(name: str) -> None:
    command = CHECKS[name]
    if command[0] == "ruff" and not shutil.which("ruff"):
        command = [sys.executable, "-m", *command]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr

"""The package shows the data flow (README, Layout): every module sits in its
step's package and no import points backwards, function-local ones included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "stream_app"
STEPS = ("ingest", "domain", "risk", "runtime", "tools")
TOP_LEVEL = {"__init__.py", "__main__.py", "config.py", "py.typed"}


def test_no_import_points_backwards():
    """import-linter's layers contract in pyproject.toml; it fails on any
    import from a lower step to a higher one (tested by adding one)."""
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint), "--no-cache"], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 kept, 0 broken" in run.stdout, run.stdout


def test_every_module_is_in_a_step_package():
    loose = sorted(p.name for p in PACKAGE.iterdir() if p.name not in TOP_LEVEL and p.name != "__pycache__" and p.name not in STEPS)
    assert loose == []
    assert all((PACKAGE / step / "__init__.py").is_file() for step in STEPS)

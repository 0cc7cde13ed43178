"""Fixtures of the monitoring tests."""

from __future__ import annotations

import pytest

from tests.monitoring.tools import Tools, ensure_tools


@pytest.fixture(scope="session")
def tools() -> Tools:
    """prometheus, promtool, alertmanager and amtool, installed by
    install_tools.sh when missing (CI runs as root, so there they always run)."""
    found, why = ensure_tools()
    if found is None:
        pytest.skip(why)
    return found

"""Fixtures of the source tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from sources_helpers import SHARED_DATA, make_rows


@pytest.fixture
def rows() -> list[dict]:
    return make_rows()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA

"""Audit tests get their own state dir (signing key, checkpoint files), API included."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.factories import with_state_dir

from lookout.settings import Settings


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    return with_state_dir(settings, tmp_path)

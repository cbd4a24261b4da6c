from __future__ import annotations

import pytest

from tests import fakes


@pytest.fixture(autouse=True, scope="session")
def _fake_sources() -> None:
    fakes.install()

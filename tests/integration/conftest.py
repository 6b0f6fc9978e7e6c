"""Fixtures of the integration tests that publish onto the bus themselves."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from services.common.bus import Bus
from services.common.settings import Settings
from tests.conftest import Infra
from tests.support.aggregator_load import bus_for, drop_streams


@pytest.fixture
def namespace(infra: Infra) -> str:
    """A namespace of the test's own, derived from the run's so the run's teardown finds it."""
    return f"{infra.namespace}n{secrets.token_hex(3)}"


@pytest.fixture
async def bus(infra: Infra, namespace: str) -> AsyncIterator[Bus]:
    b = await bus_for(Settings.from_env(), infra.nats_url, namespace)
    yield b
    await drop_streams(b)
    await b.close()

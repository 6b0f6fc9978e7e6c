"""Fixtures of the integration tests that publish onto the bus themselves."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import nats
import pytest

from services.common.bus import Bus, Topology
from services.common.settings import Settings
from tests.conftest import Infra
from tests.support.aggregator_load import bus_for, drop_streams


@pytest.fixture
def namespace(infra: Infra) -> str:
    """A namespace of the test's own, derived from the run's so the run's teardown finds it."""
    return f"{infra.namespace}n{secrets.token_hex(3)}"


@pytest.fixture
async def run_bus(infra: Infra) -> AsyncIterator[Bus]:
    """The bus on the run's own namespace, where start_service's services consume and publish
    (the run's teardown deletes its streams)."""
    nc = await nats.connect(infra.nats_url)
    yield Bus(nc, Topology(infra.namespace))
    await nc.close()


@pytest.fixture
async def bus(infra: Infra, namespace: str) -> AsyncIterator[Bus]:
    b = await bus_for(Settings.from_env(), infra.nats_url, namespace)
    yield b
    await drop_streams(b)
    await b.close()

"""One Tansu broker for the Kafka source's tests (each test uses topics and groups of its
own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kafka_broker import tansu
from tests.support import free_port


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    with tansu(free_port()) as address:
        yield address

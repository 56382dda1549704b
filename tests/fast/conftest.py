"""The fast tier (`make test-fast`): everything under tests/fast runs in this process against the
local Postgres (a throwaway database per test) and Redis (a database number of its own), with the
shipped models where a test needs them. No Celery pool, gateway process or MLflow server starts:
a test here that asks for the session's stack is refused at collection.

`make test` runs these too, with the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from roadsigns.gateway.app import create_app
from roadsigns.shared.settings import Settings
from tests.stack import claim_redis_db

HERE = Path(__file__).parent
STACK_FIXTURES = {"stack", "client", "db"}  # tests/conftest.py: they start every service


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not item.path.is_relative_to(HERE):
            continue
        item.add_marker(pytest.mark.fast)
        wanted = STACK_FIXTURES & set(getattr(item, "fixturenames", ()))
        if wanted:
            raise pytest.UsageError(f"{item.nodeid}: a fast test may not use {sorted(wanted)}, which start the stack")


@pytest.fixture(scope="session")
def redis_db() -> int:
    """A Redis database number no other test session on this machine is using, for this session."""
    return claim_redis_db()


@pytest.fixture()
def broker(redis_db: int) -> Iterator[str]:
    """The local Redis, on this session's database, empty before and after the test."""
    url = f"redis://127.0.0.1:6379/{redis_db}"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()


def settings_for(engine: Engine, broker: str, blobs: Path, **overrides: Any) -> Settings:
    """A gateway's settings over the test's database, Redis database and blob folder."""
    return Settings(
        environment="test",
        database_url=engine.url.render_as_string(hide_password=False),
        broker_url=broker,
        blob_dir=blobs,
        link_secret="fast-link-secret",
        **overrides,
    )


@pytest.fixture()
def gateway(engine: Engine, broker: str, tmp_path: Path) -> Iterator[TestClient]:
    """The gateway app in this process (its lifespan run), over a throwaway database."""
    with TestClient(create_app(settings_for(engine, broker, tmp_path))) as client:
        yield client

"""Engines and sessions, one engine per process, named so `pg_stat_activity` shows who is connected."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker


@lru_cache(maxsize=8)
def get_engine(url: str, application_name: str = "roadsigns", pool_size: int = 5) -> Engine:
    """`pool_size` should cover the connections a process uses at once: beyond it, each
    extra connection is opened for one request and closed after it."""
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=10,
        pool_timeout=5,
        connect_args={"application_name": f"{application_name}:{os.getpid()}", "connect_timeout": 3},
    )


@lru_cache(maxsize=8)
def _factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed on success, rolled back on any error."""
    session = _factory(engine)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()

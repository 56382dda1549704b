"""`roadsigns-migrate`: wait for the database, create it if missing, run `alembic upgrade head`.

A separate step (compose one-shot service, Helm hook Job, `make migrate`); never on import.
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from roadsigns.shared.settings import get_settings


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("roadsigns.shared.db").joinpath("migrations")))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def ensure_database(url: str, wait_s: float) -> None:
    """Wait until the server answers; create the database when it does not exist yet."""
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with admin.connect() as conn:
                exists = conn.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database}
                ).scalar()
                if not exists:
                    conn.execute(text(f'CREATE DATABASE "{target.database}"'))
            break
        except Exception as exc:  # noqa: BLE001 - any connection error means "not yet"
            if time.monotonic() > deadline:
                raise SystemExit(f"roadsigns-migrate: database not reachable: {exc}") from exc
            time.sleep(1)
    admin.dispose()


def upgrade(url: str, wait_s: float = 30) -> None:
    ensure_database(url, wait_s)
    command.upgrade(alembic_config(url), "head")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roadsigns-migrate", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="default: ROADSIGNS_DATABASE_URL")
    parser.add_argument("--wait", type=float, default=30, help="seconds to wait for the server")
    args = parser.parse_args(argv)
    upgrade(args.database_url or get_settings().database_url, args.wait)
    print("database schema is up to date", file=sys.stderr)
    return 0

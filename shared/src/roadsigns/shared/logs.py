"""One log format for every process: timestamp, level, logger, message."""

from __future__ import annotations

import logging
import os


def setup(service: str) -> logging.Logger:
    level = os.environ.get("ROADSIGNS_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s")
    return logging.getLogger(f"roadsigns.{service}")

"""Settings of ``python -m bench.resume``: the bench project on a database of its own.

The resume benchmark creates, updates and deletes items, so it does not share the
``gqlsync_bench`` database whose rows the other scenarios count on. Environment, on top
of :mod:`bench.app.settings`'s:

- ``BENCH_RESUME_DB``: the PostgreSQL database (default ``gqlsync_bench_resume``; on
  SQLite, the bench's file name with ``-resume`` appended);
- ``BENCH_LOG``: ``auto`` (the default: a Redis Stream with channels-redis, process
  memory with the in-memory layer) or ``none`` (``GQLSYNC["LOG"] = None``).
"""

from __future__ import annotations

import os

from bench.app.settings import *  # noqa: F403
from bench.app.settings import DATABASES, GQLSYNC

if str(DATABASES["default"]["ENGINE"]).endswith("postgresql"):
    DATABASES["default"]["NAME"] = os.environ.get("BENCH_RESUME_DB", "gqlsync_bench_resume")
else:
    DATABASES["default"]["NAME"] = f"{DATABASES['default']['NAME']}-resume"

GQLSYNC = {**GQLSYNC, "LOG": None if os.environ.get("BENCH_LOG") == "none" else "auto"}

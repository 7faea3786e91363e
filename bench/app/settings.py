"""Settings of the bench project.

Environment (``python -m bench`` sets it for every process it starts):

- ``BENCH_DATABASE``: ``postgres`` (database ``gqlsync_bench`` on 127.0.0.1) or the path of
  a SQLite file; unset: PostgreSQL when it answers, else SQLite under the temp directory;
- ``REDIS_URL`` and ``BENCH_REDIS_PREFIX``: the channels-redis layer every process shares
  (unset: the in-memory layer, which only reaches subscribers in the writing process);
- ``BENCH_GQLSYNC_LAYER``: the layer alias gqlsync publishes on; the writer sets ``local``
  when it benchmarks the baseline or the floor, so that gqlsync's capture sends nothing;
- ``BENCH_DB_NAME``: the PostgreSQL database (default ``gqlsync_bench``; ``bench.bigtable``
  uses its own); ``BENCH_VIEW_KEYS_MAX``: gqlsync's ``VIEW_KEYS_MAX`` (bench.bigtable).
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

SECRET_KEY = "gqlsync-bench-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "strawberry_django",
    "gqlsync",
    "bench.app",
]
ROOT_URLCONF = "bench.app.urls"


def _postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


_database = os.environ.get("BENCH_DATABASE") or (
    "postgres" if _postgres_reachable() else str(Path(tempfile.gettempdir()) / "gqlsync-bench.db")
)
if _database == "postgres":
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("BENCH_DB_NAME") or "gqlsync_bench",
        "USER": "postgres", "HOST": "127.0.0.1", "PORT": 5432,
    }}
else:
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.sqlite3", "NAME": _database,
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
    }}

# Capacity: Channels drops a message silently when a channel holds ``capacity`` of them.
# The largest burst of a run (every event of a scenario waiting in one process's channel)
# stays far below this. socket_timeout: redis-py 8 defaults it to 5 s, the length of
# channels-redis' blocking reads (channels_redis#422); the demo's settings explain it.
# max_connections: redis-py 8's asyncio pool allows 100 connections and then raises
# MaxConnectionsError instead of waiting; the baseline's per-subscriber group_add needs
# more than that while a thousand subscriptions arrive (they would fail with "Too many
# connections"), so every variant gets a pool large enough.
CAPACITY = 100_000
_local = {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": CAPACITY}}
if os.environ.get("REDIS_URL"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": os.environ["REDIS_URL"], "socket_timeout": 30,
                                 "max_connections": 10_000}],
                       "capacity": CAPACITY,
                       "prefix": os.environ.get("BENCH_REDIS_PREFIX", "bench")},
        },
        "local": _local,
    }
else:
    CHANNEL_LAYERS = {"default": _local, "local": _local}

GQLSYNC: dict[str, object] = {
    "CHANNEL_LAYER": os.environ.get("BENCH_GQLSYNC_LAYER", "default"),
    "GRAPHIQL": False,
}
if os.environ.get("BENCH_VIEW_KEYS_MAX"):  # bench.bigtable's "keys" variant
    GQLSYNC["VIEW_KEYS_MAX"] = int(os.environ["BENCH_VIEW_KEYS_MAX"])
LOGGING = {"version": 1, "disable_existing_loggers": False}

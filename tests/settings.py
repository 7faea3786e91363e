"""Test settings: the demo project, on PostgreSQL when it is there (always, under CI)."""

import os
import socket

from schema_examples.settings import *  # noqa: F403

SECRET_KEY = "gqlsync-tests"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


PG_HOST = os.environ.get("GQLSYNC_TEST_PG_HOST", "127.0.0.1")
if os.environ.get("CI") == "true" or _reachable(PG_HOST, 5432):
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "test",
        "USER": os.environ.get("GQLSYNC_TEST_PG_USER", "postgres"),
        "HOST": PG_HOST,
        "PORT": 5432,
        # several suites may run at once on one machine: each names its own test database
        "TEST": {"NAME": os.environ.get("GQLSYNC_TEST_DB", "gqlsync_test")},
    }}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

CHANNEL_LAYERS = {"default": {
    "BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 10_000},
}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING = {"version": 1, "disable_existing_loggers": False}

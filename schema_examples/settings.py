"""Settings of the demo project; environment: PORT, GQLSYNC_DEMO_DB, REDIS_URL, DATABASE_URL."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "gqlsync-demo-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["*"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "strawberry_django",
    "gqlsync",
    "schema_examples.bookstore",
    "schema_examples.chat",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "schema_examples.urls"

if os.environ.get("DATABASE_URL", "").startswith("postgres"):
    from urllib.parse import urlparse

    _url = urlparse(os.environ["DATABASE_URL"])
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.path.lstrip("/"), "USER": _url.username or "postgres",
        "PASSWORD": _url.password or "", "HOST": _url.hostname or "127.0.0.1",
        "PORT": _url.port or 5432,
    }}
else:
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("GQLSYNC_DEMO_DB", str(Path.cwd() / "gqlsync-demo.sqlite3")),
        # several server processes may share the file: wait for locks instead of failing
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
    }}

# The in-memory layer serves one process. Set REDIS_URL to run several processes (or
# hosts): every process's subscribers then get every process's changes.
# capacity: gqlsync's hub drains its channel at once, but bursts land before it reads;
# a generous capacity keeps channels from dropping messages silently.
# socket_timeout: redis-py 8 defaults it to 5 s, the length of channels-redis' blocking
# reads, so idle connections would fail; give the reads room (channels_redis#422).
# GQLSYNC_REDIS_LAYER=pubsub picks channels-redis' Pub/Sub layer (no capacity to size:
# Redis Pub/Sub pushes to subscribers) instead of the core, list-based layer.
if os.environ.get("REDIS_URL"):
    _hosts = [{"address": os.environ["REDIS_URL"], "socket_timeout": 30}]
    _prefix = os.environ.get("GQLSYNC_REDIS_PREFIX", "asgi")
    if os.environ.get("GQLSYNC_REDIS_LAYER") == "pubsub":
        CHANNEL_LAYERS = {"default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": _hosts, "prefix": _prefix},
        }}
    else:
        CHANNEL_LAYERS = {"default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": _hosts, "prefix": _prefix,
                       # GQLSYNC_REDIS_CAPACITY: the tests shrink it to make drops
                       "capacity": int(os.environ.get("GQLSYNC_REDIS_CAPACITY", "10000"))},
        }}
else:
    CHANNEL_LAYERS = {"default": {
        "BACKEND": "channels.layers.InMemoryChannelLayer",
        "CONFIG": {"capacity": 10_000},
    }}

GQLSYNC = {
    "ALLOWED_ORIGINS": [o for o in os.environ.get("GQLSYNC_ALLOWED_ORIGINS", "").split(",") if o],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"gqlsync": {"handlers": ["console"], "level": "INFO"}},
}

"""Django app config: connects the capture receivers once, at start-up, and keeps
permission refusals out of Strawberry's error log (``gqlsync.logging``)."""

from __future__ import annotations

from django.apps import AppConfig


class GQLSyncConfig(AppConfig):
    name = "gqlsync"
    verbose_name = "gqlsync"

    def ready(self) -> None:
        from gqlsync import capture, conf
        from gqlsync import logging as logs

        conf.get_settings()  # fail fast on unknown settings
        capture.connect()
        logs.install()  # after Django's LOGGING is applied: refusals at INFO

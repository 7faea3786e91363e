"""Django app config: connects the capture receivers once, at start-up."""

from __future__ import annotations

from django.apps import AppConfig


class GQLSyncConfig(AppConfig):
    name = "gqlsync"
    verbose_name = "gqlsync"

    def ready(self) -> None:
        from gqlsync import capture, conf

        conf.get_settings()  # fail fast on unknown settings
        capture.connect()

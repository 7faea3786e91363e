"""Registration options and settings are checked when they are made, not when they bite."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import models

from gqlsync import registry
from gqlsync.conf import DEFAULTS, get_settings
from gqlsync.exceptions import ConfigurationError, NotRegisteredError
from schema_examples.bookstore.models import Book


def test_a_registered_model_sends_its_concrete_fields_by_default() -> None:
    assert registry.get(Book).snapshot_fields == ("id", "title", "author_id")


def test_exclude_keeps_a_field_off_the_wire() -> None:
    class Secretive(models.Model):
        name = models.CharField(max_length=10)
        api_key = models.CharField(max_length=10)

        class Meta:
            app_label = "bookstore"

    registry.register(exclude=["api_key"])(Secretive)
    try:
        reg = registry.get(Secretive)
        assert reg.snapshot_fields == ("id", "name")
        assert registry.snapshot(Secretive(id=1, name="n", api_key="k")) == {"id": 1, "name": "n"}
    finally:
        registry._registry.pop(reg.label)


def test_an_unknown_field_name_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="nope"):
        registry.register(fields=["title", "nope"])(Book)


def test_an_unregistered_model_is_named_in_the_error() -> None:
    with pytest.raises(NotRegisteredError, match=r"auth\.user"):
        registry.get("auth.user")


def test_settings_default_and_override(settings: Any) -> None:
    assert get_settings() == DEFAULTS
    settings.GQLSYNC = {"SUBSCRIPTION_QUEUE_SIZE": 5}
    assert get_settings()["SUBSCRIPTION_QUEUE_SIZE"] == 5
    assert get_settings()["GROUP_PREFIX"] == DEFAULTS["GROUP_PREFIX"]


def test_a_misspelt_setting_is_an_error(settings: Any) -> None:
    settings.GQLSYNC = {"SUBSCRIPTION_QUEUE_SIZ": 5}
    with pytest.raises(ConfigurationError, match="SUBSCRIPTION_QUEUE_SIZ"):
        get_settings()

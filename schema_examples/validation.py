"""The demo's writes go through the model's own validation: SQLite enforces no
``max_length``, and an over-long value would be stored and sent to every subscriber."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from graphql import GraphQLError


def validated(instance: models.Model, exclude: list[str] | None = None) -> None:
    """``full_clean()`` the row, or answer with a GraphQL error naming each bad field
    (``extensions``: ``code: BAD_USER_INPUT``, ``fields: {name: [messages]}``)."""
    try:
        instance.full_clean(exclude=exclude)
    except ValidationError as error:
        fields = error.message_dict
        summary = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in fields.items())
        raise GraphQLError(f"Invalid input: {summary}",
                           extensions={"code": "BAD_USER_INPUT", "fields": fields}) from None

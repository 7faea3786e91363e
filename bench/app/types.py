"""The GraphQL types all three servers expose (the floor writes the same JSON by hand)."""

import strawberry_django
from strawberry import auto

import gqlsync
from bench.app.models import Item
from bench.app.rules import members_only


@strawberry_django.filter_type(Item, lookups=True)
class ItemFilter:
    group: auto


@strawberry_django.type(Item, name="Item", filters=ItemFilter)
class ItemType:
    id: auto
    title: auto
    group: auto
    sent_at: auto


@gqlsync.protect(members_only)
@strawberry_django.type(Item, name="ScopedItem")
class ScopedItemType:
    """The same fields, under the per-user rule of :mod:`bench.app.rules`."""

    id: auto
    title: auto
    group: auto
    sent_at: auto

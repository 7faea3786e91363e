"""The GraphQL types all three servers expose (the floor writes the same JSON by hand)."""

import strawberry_django
from strawberry import auto

from bench.app.models import Item


@strawberry_django.filter_type(Item, lookups=True)
class ItemFilter:
    group: auto


@strawberry_django.type(Item, name="Item", filters=ItemFilter)
class ItemType:
    id: auto
    title: auto
    group: auto
    sent_at: auto

"""gqlsync: realtime GraphQL for Django.

Committed model changes reach Strawberry subscriptions, filtered by the same permission
rules that guard queries and mutations. See https://gqlsync.readthedocs.io (``docs/``).

Pipeline, one module per stage::

    capture -> events -> broker -> hub -> matching/permissions -> fields -> transport
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The names below import Django models machinery and Strawberry; they are loaded on first
# use so that ``import gqlsync`` in settings.py (or before django.setup()) is harmless.
_LAZY = {
    "AllowAny": "gqlsync.permissions",
    "Change": "gqlsync.fields",
    "ChangeOp": "gqlsync.fields",
    "Event": "gqlsync.events",
    "Guard": "gqlsync.permissions",
    "DjangoPerms": "gqlsync.permissions",
    "IsAuthenticated": "gqlsync.permissions",
    "IsStaff": "gqlsync.permissions",
    "Op": "gqlsync.events",
    "Permission": "gqlsync.permissions",
    "TrackedManager": "gqlsync.capture",
    "TrackedQuerySet": "gqlsync.capture",
    "cursor": "gqlsync.fields",
    "event_type": "gqlsync.fields",
    "get_object": "gqlsync.permissions",
    "get_user": "gqlsync.auth",
    "identity_changed": "gqlsync.capture",
    "listen": "gqlsync.fields",
    "make_token": "gqlsync.auth",
    "notify": "gqlsync.capture",
    "protect": "gqlsync.permissions",
    "authorize": "gqlsync.permissions",
    "register": "gqlsync.registry",
    "subscription": "gqlsync.fields",
}

__all__ = [
    "AllowAny",
    "Change",
    "ChangeOp",
    "DjangoPerms",
    "Event",
    "Guard",
    "IsAuthenticated",
    "IsStaff",
    "Op",
    "Permission",
    "TrackedManager",
    "TrackedQuerySet",
    "__version__",
    "authorize",
    "cursor",
    "event_type",
    "get_object",
    "get_user",
    "identity_changed",
    "listen",
    "make_token",
    "notify",
    "protect",
    "register",
    "subscription",
]

if TYPE_CHECKING:
    from gqlsync.auth import get_user, make_token
    from gqlsync.capture import TrackedManager, TrackedQuerySet, identity_changed, notify
    from gqlsync.events import Event, Op
    from gqlsync.fields import Change, ChangeOp, cursor, event_type, listen, subscription
    from gqlsync.permissions import (
        AllowAny,
        DjangoPerms,
        Guard,
        IsAuthenticated,
        IsStaff,
        Permission,
        authorize,
        get_object,
        protect,
    )
    from gqlsync.registry import register


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gqlsync' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

"""The permission hook: one object that guards queries, mutations and subscriptions.

A :class:`Permission` answers four questions about a user:

- :meth:`~Permission.has_operation`: may they run this field at all?
- :meth:`~Permission.visible`: which rows may they see (a ``Q``; it filters querysets and
  decides, on every event, whether a subscriber gets the row);
- :meth:`~Permission.has_object`: may they see or change this object?
- :meth:`~Permission.scope`: a hashable key such that two users with the same scope see
  exactly the same rows and fields. The default is the user's id (no sharing across
  users); return something coarser (``"staff"``, ``"anonymous"``) when your rule allows.

It knows users and rows, not protocols or sockets.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, TypeVar

from django.db import models
from django.db.models import Q, QuerySet

from gqlsync.auth import User

_QS = TypeVar("_QS", bound=QuerySet[Any])


class Permission:
    """Allows everything; subclass and override what your rule restricts."""

    #: the message of the GraphQL error when :meth:`has_operation` says no
    message = "You do not have permission to do this."

    def has_operation(self, user: User) -> bool:
        return True

    def visible(self, user: User) -> Q:
        """The rows ``user`` may see, as a condition on the model. ``Q()`` is all rows."""
        return Q()

    def filter_queryset(self, user: User, queryset: _QS) -> _QS:
        condition = self.visible(user)
        return queryset.filter(condition) if condition else queryset

    def has_object(self, user: User, obj: models.Model, action: str = "view") -> bool:
        return self.filter_queryset(user, type(obj)._default_manager.filter(pk=obj.pk)).exists()

    def scope(self, user: User) -> Hashable:
        if not user.is_authenticated:
            return ("anonymous",)
        return ("user", user.pk)


class AllowAny(Permission):
    """Everyone sees every row; every user shares one scope."""

    def scope(self, user: User) -> Hashable:
        return ("any",)


class IsAuthenticated(Permission):
    """Signed-in users only, all rows."""

    message = "You must be signed in."

    def has_operation(self, user: User) -> bool:
        return bool(user.is_authenticated)

    def scope(self, user: User) -> Hashable:
        return ("authenticated",)

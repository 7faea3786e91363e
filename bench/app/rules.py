"""The per-user rule of the ``scoped`` and ``bigtable`` scenarios, shaped like the demo's
chat: an item is visible to the members of its group (``Member`` rows), each user is
their own permission scope, and ``itemChangedIn(room:)`` checks membership when a client
subscribes, then follows that group's items (``where=``)."""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from graphql import GraphQLError

import gqlsync
from bench.app.models import Member


class GroupMembers(gqlsync.Permission):
    """Items of the groups the user is a member of; one scope per user (the default)."""

    message = "Members only."
    depends_on = ("bench.member",)

    def has_operation(self, user: Any) -> bool:
        return bool(user.is_authenticated)

    def visible(self, user: Any) -> Q:
        return Q(group__in=Member.objects.filter(user=user.pk).values("group"))


def is_member(user: Any, room: int) -> bool:
    return bool(user.is_authenticated
                and Member.objects.filter(user=user.pk, group=room).exists())


def in_room(info: Any, room: int) -> Q:
    """``itemChangedIn(room:)``: members of the group only, then that group's items."""
    if not is_member(gqlsync.get_user(info), room):
        raise GraphQLError("You are not a member of this room.",
                           extensions={"code": "FORBIDDEN"})
    return Q(group=room)


members_only = GroupMembers()

"""Members only: a user sees a room's messages while they are a member of the room."""

from __future__ import annotations

from collections.abc import Hashable

from django.db.models import Q

from gqlsync import Permission
from gqlsync.auth import User


class RoomMembersOnly(Permission):
    """For ``Message`` rows: signed-in members of the message's room."""

    message = "You must be signed in and a member of the room."

    def has_operation(self, user: User) -> bool:
        return bool(user.is_authenticated)

    def visible(self, user: User) -> Q:
        if not user.is_authenticated:
            return Q(pk__in=[])
        return Q(room__members=user.pk)

    def scope(self, user: User) -> Hashable:
        return ("user", user.pk)


members_only = RoomMembersOnly()

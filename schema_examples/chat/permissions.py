"""Members only: a user sees a room, and its messages, while they are one of its members."""

from __future__ import annotations

from collections.abc import Hashable

from django.db.models import Q

from gqlsync import Permission
from gqlsync.auth import User


class RoomMembersOnly(Permission):
    """For ``Room`` rows: the rooms the signed-in user is a member of."""

    messages = {"authenticated": "You must be signed in to see rooms."}

    def visible(self, user: User) -> Q:
        if not user.is_authenticated:
            return Q(pk__in=[])
        return Q(members=user.pk)


class MessagesOfMyRooms(Permission):
    """For ``Message`` rows: signed-in members of the message's room.

    Which messages a user sees changes when a room's members change, so the rule
    ``depends_on`` rooms: subscribers are told of messages entering or leaving their view.
    """

    messages = {"authenticated": "You must be signed in to read a room's messages."}
    depends_on = ("chat.room",)

    def has_operation(self, user: User) -> bool:
        return bool(user.is_authenticated)

    def visible(self, user: User) -> Q:
        if not user.is_authenticated:
            return Q(pk__in=[])
        return Q(room__members=user.pk)

    def scope(self, user: User) -> Hashable:
        return ("user", user.pk)


rooms_of_members = RoomMembersOnly()
members_only = MessagesOfMyRooms()

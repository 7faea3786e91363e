# chat/members.py: one per-user rule, and the query, mutation and subscription it guards
import strawberry
import strawberry_django
from asgiref.sync import sync_to_async
from django.contrib.auth import authenticate, get_user_model
from django.db import models
from django.db.models import Q
from graphql import GraphQLError
from strawberry import auto
from strawberry.types import Info

import gqlsync
from gqlsync.auth import User
from schema_examples.chat.models import Message, Room


# --- the rule, defined once ------------------------------------------------------------
class RoomMembers(gqlsync.Permission):
    """Members of a room read its messages; only a message's author may change it."""

    depends_on = ("chat.room",)  # joining or leaving a room changes what one sees

    def has_operation(self, user: User) -> bool:
        # may they run the fields at all? (refused: "You must be signed in.")
        return bool(user.is_authenticated)

    def visible(self, user: User) -> Q:
        # which rows they see: in every query, and for every event of a subscription
        if not user.is_authenticated:
            return Q(pk__in=[])
        return Q(room__members=user.pk)

    def has_object(self, user: User, obj: models.Model, action: str = "view") -> bool:
        # what they may do to one row they can see (get_object() asks; refused: "You
        # may not change this message."): only its author changes a message
        if action != "view" and getattr(obj, "author_id", None) != user.pk:
            return False
        return super().has_object(user, obj, action)


room_members = RoomMembers()


# --- the types -------------------------------------------------------------------------
@strawberry_django.type(get_user_model(), name="User")
class UserType:
    username: auto


@strawberry_django.type(Room, name="Room")
class RoomType:
    name: auto


@gqlsync.protect(room_members)  # every queryset of the type, and its subscriptions
@strawberry_django.type(Message, name="Message")
class MessageType:
    id: auto
    text: auto
    author: UserType
    room: RoomType


# --- the query, the mutations and the subscription -------------------------------------
@strawberry.type
class Query:
    # where a subscription started now resumes from: select it before the rows
    messages_cursor: str = gqlsync.cursor(MessageType)
    # Guard: an anonymous client is refused, as its subscription is (not given [])
    messages: list[MessageType] = strawberry_django.field(
        extensions=[gqlsync.Guard(room_members)])


@strawberry.type
class LoginResult:
    token: str  # send it as `Authorization: Bearer <token>`


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def login(self, username: str, password: str) -> LoginResult:
        user = await sync_to_async(authenticate)(username=username, password=password)
        if user is None:
            raise GraphQLError("Invalid username or password.",
                               extensions={"code": "BAD_LOGIN"})
        return LoginResult(token=gqlsync.make_token(user))

    @strawberry.mutation
    async def edit_message(self, info: Info, id: strawberry.ID, text: str) -> MessageType:
        # the message among those the user can see, then has_object(..., "change")
        message = await gqlsync.get_object(
            info, Message.objects.select_related("author", "room"), id, "change",
            permission=room_members)
        message.text = text
        await message.asave(update_fields=["text"])
        return message  # type: ignore[return-value]


@strawberry.type
class Subscription:
    message_changed = gqlsync.subscription(MessageType)  # the rule protect() set


schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)

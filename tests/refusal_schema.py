"""A schema for the refusal tests: each rule guards a query, a mutation and a subscription.

One protected message type per rule (a rule is a set of checks, each with its refusal):

- ``own``: signed-in users, their own messages (default messages);
- ``legacy``: the same rule written before per-check messages, with one ``message``;
- ``custom``: the same rule with ``messages`` overriding two checks;
- ``member``: a check of its own (``failed_check``), members of #general only;
- books behind ``DjangoPerms``, and a staff-only query (``IsStaff``).

``ownUnguarded`` is ``own``'s list without ``Guard``: ``protect`` alone filters rows.
The ``edit*`` mutations fetch the row themselves and ``authorize()`` it (an object in
hand); ``ownMessage``/``legacyMessage`` fetch it with ``get_object()``, which answers a
row the user may not see as a missing one.
"""

from __future__ import annotations

from typing import Any

import strawberry
import strawberry_django
from django.db.models import Q
from strawberry import auto
from strawberry.types import Info

import gqlsync
import gqlsync.asgi
from gqlsync.auth import User
from schema_examples.bookstore.models import Book
from schema_examples.chat.models import Message


class OwnMessages(gqlsync.Permission):
    """Signed-in users; each sees and changes only the messages they wrote."""

    def has_operation(self, user: User) -> bool:
        return bool(user.is_authenticated)

    def visible(self, user: User) -> Q:
        return Q(author=user.pk) if user.is_authenticated else Q(pk__in=[])


class LegacyOwnMessages(OwnMessages):
    """As written before per-check messages: one ``message`` for every refusal."""

    message = "Sign in to see your tasks."


class MemberOfGeneral(OwnMessages):
    """A check of its own: members of #general (not carol)."""

    messages = {"member": "Join #general first."}

    def has_operation(self, user: User) -> bool:
        return super().has_operation(user) and user.rooms.filter(name="general").exists()

    def failed_check(self, user: User) -> str:
        return "member" if user.is_authenticated else super().failed_check(user)


own = OwnMessages()
legacy = LegacyOwnMessages()
custom = OwnMessages(messages={"authenticated": "Sign in to see your messages.",
                               "object": "Only its author may {action} this message."})
member = MemberOfGeneral()
view_book = gqlsync.DjangoPerms("bookstore.view_book")
change_book = gqlsync.DjangoPerms("bookstore.change_book")


@gqlsync.protect(own)
@strawberry_django.type(Message, name="OwnMessage")
class OwnType:
    id: auto
    text: auto


@gqlsync.protect(legacy)
@strawberry_django.type(Message, name="LegacyMessage")
class LegacyType:
    id: auto
    text: auto


@gqlsync.protect(custom)
@strawberry_django.type(Message, name="CustomMessage")
class CustomType:
    id: auto
    text: auto


@gqlsync.protect(member)
@strawberry_django.type(Message, name="MemberMessage")
class MemberType:
    id: auto
    text: auto


@strawberry_django.type(Book, name="Book")
class BookType:
    id: auto
    title: auto


def guarded(rule: gqlsync.Permission) -> Any:
    return strawberry_django.field(extensions=[gqlsync.Guard(rule)])


async def _edit(info: Info, rule: gqlsync.Permission, id: str, text: str) -> Any:
    message = await Message.objects.aget(pk=id)
    await gqlsync.authorize(info, message, "change", permission=rule)
    message.text = text
    await message.asave(update_fields=["text"])
    return message


@strawberry.type
class Query:
    @strawberry.field
    async def own_message(self, info: Info, id: strawberry.ID) -> OwnType:
        return await gqlsync.get_object(  # type: ignore[return-value]
            info, Message, id, "view", permission=own)

    @strawberry.field
    async def legacy_message(self, info: Info, id: strawberry.ID) -> LegacyType:
        return await gqlsync.get_object(  # type: ignore[return-value]
            info, Message.objects, id, "view", permission=legacy)  # a manager

    own: list[OwnType] = guarded(own)
    own_unguarded: list[OwnType] = strawberry_django.field()
    legacy: list[LegacyType] = guarded(legacy)
    custom: list[CustomType] = guarded(custom)
    member: list[MemberType] = guarded(member)
    books: list[BookType] = guarded(view_book)

    @strawberry.field(extensions=[gqlsync.Guard(gqlsync.IsStaff())])
    def staff_only(self) -> int:
        return 1


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def edit_own(self, info: Info, id: strawberry.ID, text: str) -> OwnType:
        return await _edit(info, own, id, text)  # type: ignore[no-any-return]

    @strawberry.mutation
    async def edit_legacy(self, info: Info, id: strawberry.ID, text: str) -> LegacyType:
        return await _edit(info, legacy, id, text)  # type: ignore[no-any-return]

    @strawberry.mutation
    async def edit_custom(self, info: Info, id: strawberry.ID, text: str) -> CustomType:
        return await _edit(info, custom, id, text)  # type: ignore[no-any-return]

    @strawberry.mutation(extensions=[gqlsync.Guard(change_book)])
    async def rename_book(self, id: strawberry.ID, title: str) -> BookType:
        book = await Book.objects.aget(pk=id)
        book.title = title
        await book.asave(update_fields=["title"])
        return book  # type: ignore[return-value]


@strawberry.type
class Subscription:
    own_changed = gqlsync.subscription(OwnType)
    legacy_changed = gqlsync.subscription(LegacyType)
    custom_changed = gqlsync.subscription(CustomType)
    member_changed = gqlsync.subscription(MemberType)
    book_changed = gqlsync.subscription(BookType, permission=view_book)
    staff_changed = gqlsync.subscription(BookType, permission=gqlsync.IsStaff())


schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)
application = gqlsync.asgi.application(schema)

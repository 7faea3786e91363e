"""Permission views at any table size: keys kept up to ``VIEW_KEYS_MAX``, none beyond.

A view that keeps no keys is judged on each row's previous state, so its memory does not
grow with the table; ``tests/test_sync_property.py`` checks that its subscribers' copies
stay exact (``..._when_views_keep_no_keys``). Here: what it keeps, what it reads, and what
its subscribers are told when what the rule depends on changes.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from gqlsync.matching import TrackedView
from gqlsync.testing import GraphQLWSClient, settle
from schema_examples.chat.models import Message, Room
from schema_examples.chat.permissions import members_only
from tests.test_transport import token_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded")]


def _alices_view(limit: int | None) -> TrackedView:
    alice = get_user_model().objects.get(username="alice")
    return TrackedView(members_only.filter_queryset(alice, Message.objects.all()), limit=limit)


def _messages(room: str, count: int) -> list[Message]:
    target = Room.objects.get(name=room)
    author = target.members.first()
    return [Message.objects.create(room=target, author=author, text=f"m{i}")
            for i in range(count)]


def test_a_view_past_the_bound_keeps_no_keys_and_reads_only_one_more() -> None:
    _messages("general", 5)
    view = _alices_view(limit=3)
    with CaptureQueriesContext(connection) as queries:
        view.load()
    assert view.pks is None
    assert "LIMIT 4" in queries[0]["sql"]
    assert "ORDER BY" not in queries[0]["sql"], "no sort of the whole view for a count"


def test_a_view_within_the_bound_keeps_its_keys() -> None:
    view = _alices_view(limit=100)
    view.load()
    assert view.pks == {m.pk for m in Message.objects.all()}  # alice is in both rooms


def test_a_view_that_grows_past_the_bound_lets_its_keys_go() -> None:
    view = _alices_view(limit=3)
    view.load()
    assert view.pks is not None
    assert len(view.pks) == 2
    for message in _messages("general", 2):
        view.record(message.pk, True)
    assert view.pks is None


def test_a_view_knows_which_columns_its_rule_reads() -> None:
    view = _alices_view(limit=0)
    assert not view.reads({"text"}), "an edit of the text cannot move a message in or out"
    assert view.reads({"room"}), "a move to another room can"
    assert view.reads(set()), "unknown changes are asked"


async def test_a_membership_change_tells_a_large_views_subscribers_to_refetch(
    settings: Any,
) -> None:
    """Announcing every row of a large view one by one would not be better than a
    refetch, and without its keys the view cannot tell which rows moved."""
    from tests.permission_schema import application

    settings.GQLSYNC = {"VIEW_KEYS_MAX": 1}
    await sync_to_async(_messages)("general", 3)
    client = GraphQLWSClient(
        application, payload={"authorization": f"Bearer {await token_for('bob')}"})
    await client.connect()
    sub = await client.subscribe("subscription { messageChanged { op node { text } } }")
    await settle()
    general = await Room.objects.aget(name="general")
    bob = await get_user_model().objects.aget(username="bob")
    await sync_to_async(general.members.remove)(bob)
    message = await sub.message(timeout=3)
    errors = (message["payload"] if message["type"] == "error"
              else message["payload"]["errors"])
    assert errors[0]["extensions"]["code"] == "RESYNC"
    await client.communicator.disconnect()


def test_a_keyless_view_does_not_guess_when_a_change_cannot_be_judged() -> None:
    """Without keys, "visible before" comes from the row's previous state. When that
    state is not known (an update whose changes are unknown, a delete whose last state
    lacks a column the rule reads) the view's subscribers are told to refetch instead:
    a NULL in place of the value could satisfy a negated rule and hand them a row they
    never saw."""
    from gqlsync import rows
    from gqlsync.events import Event, Op

    message = _messages("general", 2)[0]
    view = _alices_view(limit=0)
    view.load()
    assert view.pks is None
    views = {view.key: view}
    unknown = rows.evaluate(Event("chat.message", message.pk, Op.UPDATED, ()), {}, views)
    assert unknown.untold == {view.key}
    text_only = rows.evaluate(
        Event("chat.message", message.pk, Op.UPDATED, ("text",), before={"text": "m0"}),
        {}, views)
    assert text_only.untold == set()
    assert text_only.views[view.key] == (True, True)
    moved_without_before = rows.evaluate(
        Event("chat.message", message.pk, Op.UPDATED, ("room",)), {}, views)
    assert moved_without_before.untold == {view.key}
    deleted_without_room = rows.evaluate(
        Event("chat.message", message.pk, Op.DELETED, (), before={"text": "m0"}), {}, views)
    assert deleted_without_room.untold == {view.key}
    deleted = rows.evaluate(Event("chat.message", message.pk, Op.DELETED, (), before={
        "text": "m0", "room_id": message.room_id, "author_id": message.author_id}), {}, views)
    assert deleted.untold == set()
    assert deleted.views[view.key] == (True, False)

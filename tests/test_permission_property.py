"""The promise, checked by generation: a subscriber's events are exactly the difference
between what the same user's query returns before and after each change.

Hypothesis draws room memberships and sequences of changes — messages created, edited,
moved between rooms, deleted; members added to and removed from rooms — and after every
change compares, for every user, the events their subscription received with the diff of
their own ``messages`` query: rows that appeared are ``CREATED`` with their new values,
rows that changed are ``UPDATED``, rows that disappeared are ``DELETED`` with the last
values that user could see. Anything else is a leak or a loss. On PostgreSQL, with real
commits; ``GQLSYNC_PROPERTY_EXAMPLES`` (default 1000) sets the number of cases.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import channel_layers
from django.contrib.auth import get_user_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gqlsync.hub import get_hub
from gqlsync.testing import settle
from schema_examples.chat.models import Message, Room
from tests.permission_schema import schema

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("postgres")]

USERS = ("alice", "bob", "carol")
ROOMS = ("general", "secret")
QUERY = "{ messages { id text room { name } } }"
SUBSCRIPTION = "subscription { messageChanged { op id node { id text room { name } } } }"
EXAMPLES = int(os.environ.get("GQLSYNC_PROPERTY_EXAMPLES", "1000"))

Row = tuple[str, str]  # (text, room name)

memberships = st.fixed_dictionaries(
    {room: st.sets(st.sampled_from(USERS)) for room in ROOMS}
)
change = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(ROOMS)),
    st.tuples(st.just("edit"), st.integers(0, 7)),
    st.tuples(st.just("move"), st.integers(0, 7)),
    st.tuples(st.just("delete"), st.integers(0, 7)),
    st.tuples(st.just("join"), st.sampled_from(USERS), st.sampled_from(ROOMS)),
    st.tuples(st.just("leave"), st.sampled_from(USERS), st.sampled_from(ROOMS)),
)

_texts = itertools.count()


def apply(step: tuple[Any, ...], users: dict[str, Any], rooms: dict[str, Room]) -> None:
    """Make one change through the ORM (sync; commits at once)."""
    kind = step[0]
    messages = list(Message.objects.order_by("pk"))
    if kind == "create":
        Message.objects.create(room=rooms[step[1]], author=users["alice"],
                               text=f"m{next(_texts)}")
    elif kind in ("edit", "move", "delete") and messages:
        message = messages[step[1] % len(messages)]
        if kind == "edit":
            message.text = f"m{next(_texts)}"
            message.save()
        elif kind == "move":
            message.room = rooms["secret" if message.room.name == "general" else "general"]
            message.save()
        else:
            message.delete()
    elif kind == "join":
        rooms[step[2]].members.add(users[step[1]])
    elif kind == "leave":
        rooms[step[2]].members.remove(users[step[1]])


async def visible(user: Any) -> dict[str, Row]:
    result = await schema.execute(QUERY, context_value={"user": user})
    assert result.errors is None, result.errors
    assert result.data is not None
    return {m["id"]: (m["text"], m["room"]["name"]) for m in result.data["messages"]}


def expected_events(before: dict[str, Row], after: dict[str, Row]) -> set[tuple[str, str, Row]]:
    created = {("CREATED", pk, after[pk]) for pk in after.keys() - before.keys()}
    deleted = {("DELETED", pk, before[pk]) for pk in before.keys() - after.keys()}
    updated = {("UPDATED", pk, after[pk]) for pk in after.keys() & before.keys()
               if after[pk] != before[pk]}
    return created | deleted | updated


async def run_case(members: dict[str, set[str]], steps: list[tuple[Any, ...]]) -> None:
    users = {u.username: u async for u in get_user_model().objects.filter(username__in=USERS)}
    rooms = {r.name: r async for r in Room.objects.filter(name__in=ROOMS)}
    received: dict[str, list[tuple[str, str, Row]]] = {name: [] for name in USERS}

    async def consume(name: str) -> None:
        stream = await schema.subscribe(SUBSCRIPTION, context_value={"user": users[name]})
        assert not hasattr(stream, "errors"), stream
        async for result in stream:  # type: ignore[union-attr]
            assert result.errors is None, result.errors
            data = result.data["messageChanged"]
            node = data["node"]
            received[name].append((data["op"], data["id"], (node["text"], node["room"]["name"])))

    hub = get_hub()
    tasks = [asyncio.create_task(consume(name)) for name in USERS]
    try:
        for _ in range(1000):  # the three subscriptions join the hub
            if hub.subscription_count() == len(USERS):
                break
            await asyncio.sleep(0.005)
        assert hub.subscription_count() == len(USERS)
        views = {name: await visible(users[name]) for name in USERS}
        for step in steps:
            await sync_to_async(apply)(step, users, rooms)
            await settle()
            for name in USERS:
                now = await visible(users[name])
                want = expected_events(views[name], now)
                for _ in range(400):  # node resolution runs in the consumer tasks
                    if len(received[name]) >= len(want):
                        break
                    await asyncio.sleep(0.005)
                await asyncio.sleep(0)
                got = received[name]
                assert len(got) == len(set(got)), f"{name} got duplicates {got}"
                assert set(got) == want, (
                    f"after {step} (members {members}), {name} received {got}, "
                    f"but the query diff is {sorted(want)}"
                )
                received[name] = []
                views[name] = now
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await hub.close()


@settings(max_examples=EXAMPLES, deadline=None, derandomize=bool(os.environ.get("CI")),
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(members=memberships, steps=st.lists(change, min_size=1, max_size=6))
def test_subscribers_receive_exactly_the_diff_of_their_own_query(
    seeded: None, members: dict[str, set[str]], steps: list[tuple[Any, ...]]
) -> None:
    users = {u.username: u for u in get_user_model().objects.filter(username__in=USERS)}
    Message.objects.all().delete()
    for room in Room.objects.filter(name__in=ROOMS):
        room.members.set([users[name] for name in members[room.name]])
    Message.objects.create(room=Room.objects.get(name="general"), author=users["alice"],
                           text="seed-general")
    Message.objects.create(room=Room.objects.get(name="secret"), author=users["alice"],
                           text="seed-secret")
    channel_layers.backends.clear()  # a fresh in-memory layer for this case's event loop
    async_to_sync(run_case)(members, steps)

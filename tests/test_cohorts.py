"""Cohorts: many users' views of one rule are asked in one statement, exactly.

A rule such as "messages of my rooms" gives every user a condition with the same SQL and
their own parameters. However many of them a process follows, an event costs one
statement with one subquery per rule (PostgreSQL), and each user's answer is the one
``queryset.filter(pk=...).exists()`` would give.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from gqlsync import rows
from gqlsync.events import Event, Op
from gqlsync.matching import RowFilter, TrackedView
from schema_examples.chat.models import Message, Room
from schema_examples.chat.permissions import members_only

pytestmark = pytest.mark.django_db(transaction=True)


def _world(users: int, rooms: int, seed: int) -> tuple[list[Any], list[Room]]:
    rng = random.Random(seed)
    people = [get_user_model().objects.create(username=f"user{i}") for i in range(users)]
    places = [Room.objects.create(name=f"room-{i}") for i in range(rooms)]
    for person in people:
        person.rooms.add(*rng.sample(places, rng.randint(0, rooms)))
    return people, places


@pytest.mark.parametrize("seed", range(3))
def test_each_users_answer_is_their_own(seed: int) -> None:
    people, places = _world(users=40, rooms=5, seed=seed)
    views = {}
    for person in people:
        view = TrackedView(members_only.filter_queryset(person, Message.objects.all()))
        view.load()
        views[view.key] = view
    rng = random.Random(seed)
    for _ in range(5):
        message = Message.objects.create(room=rng.choice(places), author=people[0], text="x")
        event = Event("chat.message", message.pk, Op.CREATED)
        expected = {key: view.queryset.filter(pk=message.pk).exists()
                    for key, view in views.items()}
        with CaptureQueriesContext(connection) as queries:
            answers = rows.evaluate(event, {}, views)
        assert {key: after for key, (_, after) in answers.views.items()} == expected
        assert len(queries) == 1
        if connection.vendor == "postgresql":
            assert queries[0]["sql"].count("VALUES") == 1, "one subquery for the rule"


def test_filters_of_one_shape_are_a_cohort_too() -> None:
    people, places = _world(users=3, rooms=3, seed=7)
    checks = {}
    for place in places:
        check = RowFilter.where(Message.objects.all(), _room_named(place.name))
        checks[check.key] = check
    message = Message.objects.create(room=places[1], author=people[0], text="x")
    with CaptureQueriesContext(connection) as queries:
        answers = rows.evaluate(Event("chat.message", message.pk, Op.CREATED), checks, {})
    assert [answers.checks[key] for key in checks] == [False, True, False]
    # text parameters are untyped literals: a VALUES column of them would be ``text``,
    # which compares otherwise than the column (an enum, char(n), citext), so filters
    # that differ by a string are asked one by one
    assert "VALUES" not in queries[0]["sql"]


def test_a_parameter_every_condition_shares_stays_in_place() -> None:
    """``room__name="general"`` is the same for every user's condition, their user ids
    differ: the ids form the cohort, the name stays a parameter of the subquery."""
    from django.db.models import Q

    people, _ = _world(users=4, rooms=2, seed=3)
    general = Room.objects.create(name="general-2")
    for person in people[:2]:
        person.rooms.add(general)
    views = {}
    for person in people:
        queryset = Message.objects.filter(Q(room__members=person.pk) & Q(room__name="general-2"))
        view = TrackedView(queryset)
        view.load()
        views[view.key] = view
    message = Message.objects.create(room=general, author=people[0], text="x")
    with CaptureQueriesContext(connection) as queries:
        answers = rows.evaluate(Event("chat.message", message.pk, Op.CREATED), {}, views)
    assert [after for _, after in answers.views.values()] == [True, True, False, False]
    if connection.vendor == "postgresql":
        assert queries[0]["sql"].count("VALUES") == 1
        assert "'general-2'" in queries[0]["sql"]


def _room_named(name: str) -> Any:
    from django.db.models import Q

    return Q(room__name=name)

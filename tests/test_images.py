"""``gqlsync.images.holds``: the database judges a row *as described by an image*.

An image is a set of column values: the state a row had before an update, the last state of
a deleted row. ``holds([(queryset, image), ...])`` asks, for each pair and in one statement,
whether the queryset would select that row if it were in its table instead of the stored
one, with every other table as it is now.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.apps.registry import Apps
from django.contrib.auth.models import AnonymousUser, User
from django.db import connection, models
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Length, Lower
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gqlsync import images
from gqlsync.images import holds
from gqlsync.matching import KNOWN_FIELDS
from schema_examples.bookstore.models import Author, Book
from schema_examples.chat.models import Message, Room
from schema_examples.chat.permissions import members_only

pytestmark = pytest.mark.django_db

NOON = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


@dataclass
class Chat:
    alice: User
    bob: User
    general: Room  # alice is a member
    random: Room  # bob is a member
    hello: Message  # in general, by alice
    later: Message  # in random, by bob


@pytest.fixture
def chat() -> Chat:
    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    general = Room.objects.create(name="general")
    general.members.add(alice)
    random = Room.objects.create(name="random")
    random.members.add(bob)
    hello = Message.objects.create(room=general, author=alice, text="hello")
    later = Message.objects.create(room=random, author=bob, text="see you later")
    Message.objects.filter(pk=hello.pk).update(created=NOON)
    Message.objects.filter(pk=later.pk).update(created=NOON + dt.timedelta(hours=1))
    hello.refresh_from_db()
    later.refresh_from_db()
    return Chat(alice, bob, general, random, hello, later)


def image(message: Message | None = None, **values: Any) -> Message:
    """An unsaved Message with ``message``'s column values, ``values`` laid over them."""
    columns = {f.attname: getattr(message, f.attname) for f in Message._meta.concrete_fields
               } if message is not None else {}
    columns.update(values)
    return Message(**columns)


def visible_to(user: User | AnonymousUser) -> QuerySet[Message]:
    """The messages ``user`` may see, as the demo's permission filters them."""
    return members_only.filter_queryset(user, Message.objects.all())


# --- the image is judged, not the stored row --------------------------------------------


def test_a_permission_judges_the_image_not_the_stored_row(chat: Chat) -> None:
    mine = visible_to(chat.alice)
    # as stored: alice sees "hello" (general) and not "later" (random)
    assert mine.filter(pk=chat.hello.pk).exists()
    assert not mine.filter(pk=chat.later.pk).exists()

    hello_moved_to_random = image(chat.hello, room_id=chat.random.pk)
    later_moved_to_general = image(chat.later, room_id=chat.general.pk)
    assert holds([
        (mine, hello_moved_to_random),
        (mine, later_moved_to_general),
        (mine, image(chat.hello)),
    ]) == [False, True, True]


def test_the_image_of_a_deleted_row_is_judged_against_the_other_tables_as_they_are_now(
    chat: Chat,
) -> None:
    last_state = image(chat.hello)
    chat.hello.delete()
    assert not Message.objects.filter(pk=last_state.pk).exists()

    assert holds([(visible_to(chat.alice), last_state),
                  (visible_to(chat.bob), last_state)]) == [True, False]

    chat.general.members.remove(chat.alice)  # membership now, not at the time of the row
    chat.general.members.add(chat.bob)
    assert holds([(visible_to(chat.alice), last_state),
                  (visible_to(chat.bob), last_state)]) == [False, True]


def test_the_pk_of_the_image_is_only_a_value(chat: Chat) -> None:
    moved = image(chat.hello, id=chat.later.pk, text="edited")
    assert holds([
        (Message.objects.filter(pk=chat.hello.pk), moved),
        (Message.objects.filter(pk=chat.later.pk), moved),
        (Message.objects.filter(pk=chat.later.pk, text="edited"), moved),
        (Message.objects.filter(pk=chat.later.pk, text="see you later"), moved),
    ]) == [False, True, True, False]


# --- lookups, with the database's semantics --------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (Q(text="Good morning, everyone"), True),
        (Q(text="good morning, everyone"), False),
        (Q(text__iexact="GOOD MORNING, EVERYONE"), True),
        (Q(text__icontains="MORNING"), True),
        # the database's semantics, not Python's: SQLite's LIKE ignores ASCII case
        (Q(text__contains="MORNING"), connection.vendor == "sqlite"),
        (Q(text__startswith="Good"), True),
        (Q(text__startswith="morning"), False),
        (Q(text__endswith="everyone"), True),
        (Q(text__regex=r"^Good .*one$"), True),
        (Q(created__gte=NOON), True),
        (Q(created__gt=NOON), False),
        (Q(created__range=(NOON - dt.timedelta(minutes=1), NOON + dt.timedelta(minutes=1))),
         True),
        (Q(created__range=(NOON + dt.timedelta(minutes=1), NOON + dt.timedelta(hours=1))),
         False),
        (Q(created__date=dt.date(2024, 5, 1)), True),
        (Q(created__year=2023), False),
        (Q(room__name="general"), True),
        (Q(room__name="random"), False),
        (Q(author__username__startswith="ali"), True),
        (Q(text__isnull=True), False),
        (Q(text__isnull=False), True),
        (Q(text__in=["hi", "Good morning, everyone"]), True),
        (Q(room__name__in=["random", "lobby"]), False),
        (~Q(room__name="general"), False),
        (~Q(room__name="random"), True),
        (Q(text__startswith="Bad") | Q(room__name="general"), True),
        (Q(text__startswith="Bad") | Q(room__name="random"), False),
        (Q(text__startswith="Good") & ~Q(author__username="alice"), False),
        (Q(), True),
    ],
)
def test_lookups_follow_the_database(chat: Chat, condition: Q, expected: bool) -> None:
    greeting = image(chat.later, room_id=chat.general.pk, author_id=chat.alice.pk,
                     text="Good morning, everyone", created=NOON)
    # the stored row ("later", in random by bob, an hour later) is not the image
    assert holds([(Message.objects.filter(condition), greeting)]) == [expected]


def test_exclude_across_a_many_to_many_reads_the_image_in_its_subquery(chat: Chat) -> None:
    # exclude(room__members=...) compiles to NOT EXISTS(... = "chat_message"."room_id")
    not_alices = Message.objects.exclude(room__members=chat.alice)
    assert holds([(not_alices, image(chat.hello)),
                  (not_alices, image(chat.hello, room_id=chat.random.pk))]) == [False, True]


def test_database_functions_apply_to_the_image(chat: Chat) -> None:
    shout = image(chat.hello, text="HELLO THERE")
    assert holds([
        (Message.objects.annotate(lower=Lower("text")).filter(lower="hello there"), shout),
        (Message.objects.annotate(n=Length("text")).filter(n=11), shout),
        (Message.objects.annotate(n=Length("text")).filter(n=5), shout),
    ]) == [True, True, False]


def test_another_model_across_a_foreign_key() -> None:
    lee = Author.objects.create(name="Lee Child", email="lee@child.com")
    janet = Author.objects.create(name="Janet Evanovich", email="janet@evanovich.com")
    book = Book.objects.create(title="Killing Floor", author=lee)
    by_lee = Book.objects.filter(author__email__iendswith="@CHILD.COM")
    assert holds([
        (by_lee, Book(pk=book.pk, title=book.title, author_id=janet.pk)),
        (by_lee, Book(pk=12345, title="Die Trying", author_id=lee.pk)),
    ]) == [False, True]


# --- unknown values are NULL ------------------------------------------------------------


def test_a_column_the_image_does_not_know_is_null(chat: Chat) -> None:
    partial = image(chat.hello)
    partial.__dict__[KNOWN_FIELDS] = frozenset({"id", "room_id", "author_id", "created"})
    assert partial.text == "hello"  # the instance has a text, but it is not known
    assert holds([
        (Message.objects.filter(text__isnull=True), partial),
        (Message.objects.filter(text="hello"), partial),
        (Message.objects.exclude(text="hello"), partial),  # NULL <> 'hello' is not true
        (Message.objects.filter(room__name="general"), partial),
    ]) == [True, False, False, True]


def test_an_unknown_value_keeps_its_column_type(chat: Chat) -> None:
    # a bare NULL in a derived table would be text on PostgreSQL: "text = bigint" in the
    # join to rooms, "text >= timestamptz" in the range; each NULL is cast to its column type
    only_text = image(chat.hello)
    only_text.__dict__[KNOWN_FIELDS] = frozenset({"id", "text"})
    assert holds([
        (Message.objects.filter(room__name="general"), only_text),
        (Message.objects.filter(author__username="alice"), only_text),
        (Message.objects.filter(created__gte=NOON), only_text),
        (Message.objects.filter(room__isnull=True, created__isnull=True), only_text),
        (Message.objects.filter(text="hello"), only_text),
    ]) == [False, False, False, True, True]


def test_a_deferred_field_is_null_and_never_loaded(chat: Chat) -> None:
    loaded = Message.objects.only("id", "room_id").get(pk=chat.hello.pk)
    with CaptureQueriesContext(connection) as queries:
        answers = holds([(Message.objects.filter(text__isnull=True), loaded),
                         (Message.objects.filter(room=chat.general), loaded)])
    assert answers == [True, True]
    assert len(queries) == 1


# --- subqueries keep reading the stored rows --------------------------------------------


def test_a_subquery_over_the_same_table_reads_the_stored_rows(chat: Chat) -> None:
    edited = image(chat.hello, text="edited")
    stored_hellos = Message.objects.filter(text="hello")
    assert holds([
        (Message.objects.filter(text="hello"), edited),  # the image's own text
        (Message.objects.filter(pk__in=stored_hellos), edited),  # the stored row's text
        (Message.objects.filter(pk__in=stored_hellos), image(chat.later, text="hello")),
    ]) == [False, True, False]


def test_outer_refs_in_a_subquery_take_the_image_values(chat: Chat) -> None:
    # "another message by the same author in the same room exists"
    not_alone = Message.objects.filter(Exists(
        Message.objects.filter(room=OuterRef("room"), author=OuterRef("author"))
        .exclude(pk=OuterRef("pk"))
    ))
    newcomer = image(chat.hello, id=chat.hello.pk + 1000, text="me too")
    assert holds([
        (not_alone, newcomer),  # the stored "hello" is another one, by alice in general
        (not_alone, image(chat.hello)),  # "hello" itself is excluded by its pk
        (not_alone, image(newcomer, room_id=chat.random.pk)),  # bob alone wrote in random
    ]) == [True, False, False]


# --- one round trip ---------------------------------------------------------------------


def test_many_questions_take_one_query(chat: Chat) -> None:
    questions = []
    for i in range(20):
        room = chat.general if i % 2 == 0 else chat.random
        user = chat.alice if i % 4 < 2 else chat.bob
        questions.append((visible_to(user), image(chat.hello, id=5000 + i, room_id=room.pk)))
    with CaptureQueriesContext(connection) as queries:
        answers = holds(questions)
    assert len(queries) == 1
    assert answers == [i % 4 in (0, 3) for i in range(20)]  # alice:general, bob:random


def test_more_questions_than_a_statement_holds_take_more_round_trips(
    chat: Chat, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(images, "MAX_QUESTIONS_PER_STATEMENT", 3)
    questions = [(Message.objects.filter(text=f"m{i % 2}"), image(chat.hello, text="m0"))
                 for i in range(7)]
    with CaptureQueriesContext(connection) as queries:
        answers = holds(questions)
    assert len(queries) == 3
    assert answers == [True, False, True, False, True, False, True]


def test_no_questions_no_query() -> None:
    with CaptureQueriesContext(connection) as queries:
        assert holds([]) == []
    assert len(queries) == 0


def test_nothing_is_false_without_sql_and_everything_is_true(chat: Chat) -> None:
    row = image(chat.hello)
    with CaptureQueriesContext(connection) as queries:
        assert holds([(Message.objects.none(), row), (Message.objects.filter(pk__in=[]), row),
                      (visible_to(AnonymousUser()), row)]) == [False, False, False]
    assert len(queries) == 0
    with CaptureQueriesContext(connection) as queries:
        assert holds([(Message.objects.none(), row), (Message.objects.all(), row),
                      (Message.objects.exclude(pk__in=[]), row)]) == [False, True, True]
    assert len(queries) == 1  # exclude(pk__in=[]) is everything: WHERE is left out


# --- column types -----------------------------------------------------------------------


def make_table(
    collation: str | None = None, table: str = "gqlsync_images_test_reading",
) -> type[models.Model]:
    """A model with one column of each common type, its table created for this test only
    (the test's transaction rolls it back)."""

    class Reading(models.Model):
        code = models.UUIDField()
        level = models.DecimalField(max_digits=6, decimal_places=2)
        ok = models.BooleanField()
        day = models.DateField()
        at = models.DateTimeField()
        ratio = models.FloatField()
        big = models.BigIntegerField()
        label = models.CharField(max_length=20, db_collation=collation)
        data = models.JSONField(null=True)

        class Meta:
            apps = Apps()
            app_label = "gqlsync_images_test"
            db_table = table

    sql, params = connection.schema_editor().table_sql(Reading)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    return Reading


@pytest.fixture
def reading(db: None) -> Callable[..., models.Model]:
    Reading = make_table()
    code = uuid.UUID("12345678-1234-5678-1234-567812345678")

    def build(**values: Any) -> models.Model:
        columns: dict[str, Any] = dict(
            id=1, code=code, level=Decimal("10.50"), ok=True, day=dt.date(2024, 5, 1),
            at=NOON, ratio=0.75, big=2**40, label="apple", data={"tags": ["a", "b"]},
        )
        columns.update(values)
        return Reading(**columns)

    return build


TYPED_CONDITIONS = [
    Q(code=uuid.UUID("12345678-1234-5678-1234-567812345678")),
    Q(code=uuid.uuid4()),
    Q(level=Decimal("10.5")),
    Q(level__gt=Decimal("9.99")),  # as text, "10.50" < "9.99"
    Q(level__lt=10),
    Q(ok=True),
    Q(ok=False),
    Q(day=dt.date(2024, 5, 1)),
    Q(day__lt=dt.date(2024, 4, 30)),
    Q(day__year=2024),
    Q(at=NOON),
    Q(at__gt=NOON - dt.timedelta(seconds=1)),
    Q(at__hour=12),
    Q(ratio__gt=0.5),
    Q(ratio=0.75),
    Q(big=2**40),
    Q(big__gt=2**41),
    Q(label="apple"),
    Q(label__gt="banana"),
    Q(data__tags__contains="b") if connection.vendor == "postgresql" else Q(data__has_key="tags"),
    Q(data__has_key="other"),
    Q(data__isnull=True),
]


@pytest.mark.parametrize("condition", TYPED_CONDITIONS)
def test_an_image_answers_as_the_same_row_stored_would(
    reading: Callable[..., models.Model], condition: Q,
) -> None:
    stored = reading(id=1)
    stored.save()
    elsewhere = reading(id=2)  # the same values under another pk, not stored
    model = type(stored)
    queryset = model._default_manager.filter(condition)
    assert holds([(queryset, elsewhere)]) == [queryset.filter(pk=1).exists()]


def test_typed_columns_compare_as_the_columns_do(reading: Callable[..., models.Model]) -> None:
    row = reading()
    objects = type(row)._default_manager
    assert holds([
        (objects.filter(level__gt=Decimal("9.99")), row),
        (objects.filter(level=Decimal("10.5")), row),
        (objects.filter(day__lt=dt.date(2024, 5, 2), at__lt=timezone.now()), row),
        (objects.filter(ok=False), row),
        (objects.filter(big__gte=2**40, ratio__lt=1), row),
        (objects.filter(code=uuid.uuid4()), row),
    ]) == [True, True, True, False, True, False]


def test_a_column_collation_applies_to_the_image() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_collation WHERE collname = 'en-x-icu'")
            if cursor.fetchone() is None:
                pytest.skip("this PostgreSQL has no ICU collations")
        # "apple" < "B" under en-x-icu (dictionary order), not under "C" (byte order)
        collated, plain = make_table("en-x-icu"), make_table("C", table="gqlsync_images_c")
        condition = Q(label__lt="B")
    else:
        # "apple" = "APPLE" under NOCASE, not under BINARY
        collated, plain = make_table("NOCASE"), make_table("BINARY", table="gqlsync_images_b")
        condition = Q(label="APPLE")
    assert holds([
        (collated._default_manager.filter(condition), collated(label="apple")),
        (plain._default_manager.filter(condition), plain(label="apple")),
    ]) == [True, False]


# --- what is refused --------------------------------------------------------------------


def test_multi_table_inheritance_is_refused() -> None:
    isolated = Apps()

    class Place(models.Model):
        name = models.CharField(max_length=20)

        class Meta:
            apps = isolated
            app_label = "gqlsync_images_test"

    class Restaurant(Place):
        class Meta:
            apps = isolated
            app_label = "gqlsync_images_test"

    with pytest.raises(TypeError, match="multi-table inheritance"):
        holds([(Restaurant.objects.all(), Restaurant(name="x"))])


def test_an_image_of_another_model_is_refused(chat: Chat) -> None:
    with pytest.raises(TypeError, match=r"must be a chat\.Message"):
        holds([(Message.objects.all(), chat.general)])


def test_querysets_whose_answer_depends_on_other_rows_are_refused(chat: Chat) -> None:
    with pytest.raises(ValueError, match="sliced"):
        holds([(Message.objects.all()[:1], image(chat.hello))])
    with pytest.raises(ValueError, match=r"union\(\)"):
        holds([(Message.objects.filter(pk=1).union(Message.objects.filter(pk=2)),
                image(chat.hello))])

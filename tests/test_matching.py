"""Deleted rows are matched from their last state; live rows by the database."""

from __future__ import annotations

import pytest
from django.db.models import Q

from gqlsync.matching import RowFilter, Undecidable, matches_instance
from schema_examples.bookstore.models import Author, Book

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lee() -> Author:
    return Author.objects.create(name="Lee Child", email="lee@child.com")


def ghost(lee: Author, title: str = "Killing Floor") -> Book:
    """A book as the hub rebuilds a deleted one: never saved, foreign key by id."""
    return Book(id=999, title=title, author_id=lee.pk)


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (Q(title="Killing Floor"), True),
        (Q(title__exact="Die Trying"), False),
        (Q(title__iexact="killing floor"), True),
        (Q(title__icontains="FLOOR"), True),
        (Q(title__contains="FLOOR"), False),
        (Q(title__startswith="Kill"), True),
        (Q(title__iendswith="FLOOR"), True),
        (Q(title__in=["A", "Killing Floor"]), True),
        (Q(title__isnull=True), False),
        (Q(title__regex=r"^K.*r$"), True),
        (Q(id__gt=998), True),
        (Q(id__lte=5), False),
        (Q(id__range=(900, 1000)), True),
        (~Q(title="Killing Floor"), False),
        (Q(title="x") | Q(title="Killing Floor"), True),
        (Q(title="Killing Floor") & Q(title__startswith="Die"), False),
        (Q(), True),
    ],
)
def test_local_lookups_follow_django_semantics(lee: Author, q: Q, expected: bool) -> None:
    assert matches_instance(q, ghost(lee)) is expected


def test_a_foreign_key_path_asks_the_database_from_the_related_row(lee: Author) -> None:
    assert matches_instance(Q(author__email="lee@child.com"), ghost(lee))
    assert not matches_instance(Q(author__email="janet@evanovich.com"), ghost(lee))
    assert matches_instance(Q(author__name__icontains="child"), ghost(lee))
    assert matches_instance(Q(author=lee.pk), ghost(lee))
    assert matches_instance(Q(author=lee), ghost(lee))


def test_a_reverse_relation_of_a_deleted_row_is_undecidable(lee: Author) -> None:
    with pytest.raises(Undecidable):
        matches_instance(Q(books__title="x"), Author(id=lee.pk, name="x", email="y"))


def test_an_undecidable_filter_never_matches_a_deleted_row(lee: Author) -> None:
    condition = RowFilter.where(Author.objects.all(), Q(books__title="x"))
    assert condition.matches_deleted(Author(id=lee.pk)) is False


def test_a_field_that_did_not_travel_is_undecidable_not_a_default(lee: Author) -> None:
    from gqlsync import registry
    from gqlsync.rows import rebuild

    reg = registry.Registration(Book, "bookstore.book", ("id", "author_id"))
    rebuilt = rebuild(reg, {"id": 5, "author_id": lee.pk}, 5)
    for q in (Q(title=""), ~Q(title__contains="secret")):
        with pytest.raises(Undecidable):
            matches_instance(q, rebuilt)
    assert matches_instance(Q(author__email="lee@child.com"), rebuilt)


def test_live_rows_are_matched_by_the_database(lee: Author) -> None:
    book = Book.objects.create(title="Killing Floor", author=lee)
    by_email = RowFilter.where(Book.objects.all(), Q(author__email="lee@child.com"))
    other = RowFilter.where(Book.objects.all(), Q(author__email="janet@evanovich.com"))
    assert by_email.matches_row(book.pk)
    assert not other.matches_row(book.pk)


def test_equal_conditions_share_a_key_and_different_ones_do_not() -> None:
    a = RowFilter.where(Book.objects.all(), Q(author__email="lee@child.com"))
    b = RowFilter.where(Book.objects.all(), Q(author__email="lee@child.com"))
    c = RowFilter.where(Book.objects.all(), Q(author__email="janet@evanovich.com"))
    assert a.key == b.key
    assert a.key != c.key


@pytest.mark.parametrize(
    ("q", "indexed"),
    [
        (Q(title="Killing Floor"), True),
        (Q(title__exact="Die Trying"), True),
        (Q(author__email="lee@child.com"), True),
        (Q(author__email__exact="janet@evanovich.com"), True),
        (Q(author=1), True),
        (Q(id=1), True),
        (Q(title__icontains="floor"), False),
        (~Q(title="Killing Floor"), False),
        (Q(title__in=["a"]), False),
        (Q(author__books__title="x"), False),
    ],
)
def test_equality_conditions_are_answered_from_the_loaded_row_like_the_database(
    lee: Author, q: Q, indexed: bool
) -> None:
    from gqlsync.registry import get
    from gqlsync.rows import _loader

    books = [Book.objects.create(title=t, author=lee) for t in ("Killing Floor", "Die Trying")]
    condition = RowFilter.where(Book.objects.all(), q)
    assert (condition.equality is not None) is indexed
    for book in books:
        loaded = _loader(get(Book)).get(pk=book.pk)
        answer = condition.matches_loaded(loaded)
        if indexed:
            assert answer is condition.matches_row(book.pk)
        else:
            assert answer is None


class _Sub:
    """What the index reads of a subscription."""

    def __init__(self, *checks: RowFilter) -> None:
        self.checks = checks
        self.view = None


def test_the_index_visits_only_the_subscriptions_a_rows_values_can_reach(lee: Author) -> None:
    from gqlsync.matching import Members

    janet = Author.objects.create(name="Janet Evanovich", email="janet@evanovich.com")
    base = Book.objects.all()
    members: Members[_Sub] = Members()
    for_lee = [_Sub(RowFilter.where(base, Q(author__email="lee@child.com"))) for _ in range(3)]
    for_janet = _Sub(RowFilter.where(base, Q(author__email="janet@evanovich.com")))
    by_title = _Sub(RowFilter.where(base, Q(title__icontains="floor")))  # not an equality
    everything = _Sub()
    for sub in [*for_lee, for_janet, by_title, everything]:
        members.add(sub)
    # equal filters share one instance, counted once among the distinct conditions
    assert len({id(sub.checks[0]) for sub in for_lee}) == 1
    assert len(members.distinct_checks()) == 3

    book = Book.objects.select_related("author").get(
        pk=Book.objects.create(title="Killing Floor", author=lee).pk)
    assert set(members.candidates(book)) == {*for_lee, by_title, everything}
    # the row before a change (it left someone's view): both values' subscribers
    before = Book(id=book.pk, title="Killing Floor", author=janet)
    assert set(members.candidates(book, before)) == {*for_lee, for_janet, by_title, everything}
    # a row whose author was not loaded cannot be read without SQL: everyone is a candidate
    unjoined = Book.objects.get(pk=book.pk)
    assert set(members.candidates(unjoined)) == set(members.all)

    members.discard(for_janet)
    assert set(members.candidates(book, before)) == {*for_lee, by_title, everything}
    assert len(members.distinct_checks()) == 2

"""Events are plain data, and a transaction's changes to one row coalesce into one."""

import datetime
import decimal
import json
import uuid

import pytest

from gqlsync.events import Event, Op, new_cursor, to_primitive


def test_an_event_survives_a_json_round_trip_unchanged() -> None:
    event = Event("bookstore.book", 7, Op.UPDATED, ("title",), {"title": "Old"})
    message = json.loads(json.dumps(event.to_message()))
    assert message["type"] == "gqlsync.event"
    assert Event.from_message(message) == event


def test_a_malformed_message_is_rejected() -> None:
    with pytest.raises(ValueError, match="NOPE"):
        Event.from_message({"model": "a.b", "pk": 1, "op": "NOPE", "cursor": "c"})
    with pytest.raises(KeyError):
        Event.from_message({"model": "a.b", "op": "CREATED"})


def test_field_values_become_json_primitives() -> None:
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    key = uuid.UUID(int=1)
    assert to_primitive(when) == "2026-01-02T03:04:05+00:00"
    assert to_primitive(decimal.Decimal("1.50")) == "1.50"
    assert to_primitive(key) == str(key)
    assert to_primitive([1, datetime.date(2026, 1, 2)]) == [1, "2026-01-02"]
    json.dumps(to_primitive({"a": when, "b": (key,)}))


def test_cursors_are_unique_and_ordered_within_a_process() -> None:
    cursors = [new_cursor() for _ in range(1000)]
    assert len(set(cursors)) == 1000
    assert cursors == sorted(cursors)


def e(op: Op, changed: tuple[str, ...] = (), before: dict[str, object] | None = None) -> Event:
    return Event("bookstore.book", 1, op, changed, before)


def test_created_then_updated_is_created() -> None:
    merged = e(Op.CREATED).merge(e(Op.UPDATED, ("title",), {"title": "a"}))
    assert merged is not None
    assert merged.op is Op.CREATED


def test_created_then_deleted_is_nothing() -> None:
    assert e(Op.CREATED).merge(e(Op.DELETED, before={"id": 1})) is None


def test_updates_merge_their_fields_and_keep_the_first_previous_values() -> None:
    first = e(Op.UPDATED, ("title",), {"title": "original"})
    second = e(Op.UPDATED, ("title", "author"), {"title": "middle", "author_id": 3})
    merged = first.merge(second)
    assert merged is not None
    assert merged.op is Op.UPDATED
    assert merged.changed == ("title", "author")
    assert merged.before == {"title": "original", "author_id": 3}
    assert merged.cursor == second.cursor


def test_an_update_with_unknown_fields_stays_unknown() -> None:
    merged = e(Op.UPDATED, ("title",), {"title": "a"}).merge(e(Op.UPDATED))
    assert merged is not None
    assert merged.changed == ()


def test_updated_then_deleted_is_deleted_with_the_last_state() -> None:
    merged = e(Op.UPDATED, ("title",)).merge(e(Op.DELETED, before={"id": 1, "title": "t"}))
    assert merged is not None
    assert merged.op is Op.DELETED
    assert merged.before == {"id": 1, "title": "t"}


def test_deleted_then_created_again_is_updated() -> None:
    merged = e(Op.DELETED, before={"id": 1}).merge(e(Op.CREATED))
    assert merged is not None
    assert merged.op is Op.UPDATED


def test_only_changes_to_one_row_merge() -> None:
    with pytest.raises(ValueError, match="same row"):
        e(Op.UPDATED).merge(Event("bookstore.book", 2, Op.UPDATED))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 10**400, "soon", True, None])
def test_a_commit_time_that_is_no_time_reads_as_none_and_the_event_survives(
        value: object) -> None:
    """``committed_at`` only times the latency histogram: a bad one (a hand-written
    message, a corrupted log entry) must neither drop the event nor poison the sum."""
    message = {**Event("bookstore.book", 1, Op.UPDATED).to_message(), "committed_at": value}
    event = Event.from_message(message)
    assert (event.model, event.pk, event.op) == ("bookstore.book", 1, Op.UPDATED)
    assert event.committed_at is None

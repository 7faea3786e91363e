"""Group names keep to Channels' rules, and publishing reaches the groups."""

import re

import pytest
from channels.layers import get_channel_layer

from gqlsync import broker
from gqlsync.events import Event, Op

CHANNELS_GROUP = re.compile(r"^[a-zA-Z0-9\-_.]{1,99}$")


@pytest.mark.parametrize(
    "pk",
    [1, "abc", "{6f1c2a}", "x" * 300, "ünïcode", "a b/c", "0e8c6c3a-1b2c-4d5e-8f90-1234567890ab"],
)
def test_group_names_are_valid_for_any_primary_key(pk: object) -> None:
    assert CHANNELS_GROUP.match(broker.model_group("bookstore.book"))
    name = broker.row_group("bookstore.book", pk)  # type: ignore[arg-type]
    assert CHANNELS_GROUP.match(name), name
    assert name.startswith(broker.model_group("bookstore.book") + ".")


def test_distinct_keys_get_distinct_row_groups() -> None:
    assert broker.row_group("a.b", "x" * 300) != broker.row_group("a.b", "x" * 299 + "y")
    assert broker.row_group("a.b", 1) != broker.row_group("a.b", 2)


async def test_an_event_goes_to_its_model_group_and_its_row_group() -> None:
    layer = get_channel_layer()
    model_channel = await layer.new_channel()
    row_channel = await layer.new_channel()
    await layer.group_add(broker.model_group("bookstore.book"), model_channel)
    await layer.group_add(broker.row_group("bookstore.book", 5), row_channel)

    await broker.apublish([Event("bookstore.book", 5, Op.CREATED)])

    by_model = await layer.receive(model_channel)
    by_row = await layer.receive(row_channel)
    assert by_model["group"] == broker.model_group("bookstore.book")
    assert by_row["group"] == broker.row_group("bookstore.book", 5)
    assert Event.from_message(by_model) == Event.from_message(by_row)
    assert Event.from_message(by_model).op is Op.CREATED

"""Subscription fields: ``subscription()`` generates one, ``listen()`` powers your own.

``gqlsync.subscription(BookType)`` is a Strawberry field yielding ``BookEvent``::

    type BookEvent { op: ChangeOp!  id: ID!  cursor: String!  node: Book! }

with the arguments ``filters`` (the type's strawberry-django filter input, when it has one),
``id`` (watch one row) and ``after`` (resume from the ``cursor`` of the last event received:
what was missed comes first, then the live changes). The node of a ``DELETED`` event is
the row's last state.

``gqlsync.listen(info, BookType, where=Q(...))`` is the same stream as an async iterator of
:class:`Change`, for resolvers with custom arguments or logic; yield the changes as they
come (they resolve as the type's ``BookEvent``) or build anything from them.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import typing
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Hashable
from dataclasses import dataclass
from typing import Any, cast

import strawberry
from asgiref.sync import sync_to_async
from django.db import models
from django.db.models import Q, QuerySet
from graphql import GraphQLError
from strawberry import relay
from strawberry.types import Info
from strawberry_django.filters import process_filters

from gqlsync import broker, registry
from gqlsync.auth import get_user
from gqlsync.events import Op
from gqlsync.exceptions import ResyncRequired, SubscriptionEnded
from gqlsync.execute import OPENER, FrameSender, SharedOperation
from gqlsync.guard import check_filter
from gqlsync.hub import Delivery, Rescope, Subscription, current_sender, get_hub
from gqlsync.log import Gap, Position, get_log
from gqlsync.matching import RowFilter
from gqlsync.permissions import (
    Permission,
    Refusal,
    own_get_queryset,
    own_rows,
    permission_of,
)

ChangeOp = strawberry.enum(Op, name="ChangeOp", description="What happened to the row.")


@dataclass(frozen=True, slots=True)
class Change:
    """One change as a subscriber sees it; resolves as the generated ``<Type>Event``."""

    op: Op
    id: str
    cursor: str
    node: models.Model
    pk: Any
    changed: tuple[str, ...]


def _definition(type_: type) -> Any:
    definition = getattr(type_, "__strawberry_django_definition__", None)
    if definition is None:
        raise TypeError(f"{type_!r} is not a strawberry_django type")
    return definition


def _graphql_name(type_: type) -> str:
    definition = getattr(type_, "__strawberry_definition__", None)
    return str(definition.name) if definition is not None else type_.__name__


def _global_id(type_: type, pk: Any) -> str:
    if isinstance(type_, type) and issubclass(type_, relay.Node):
        return str(relay.to_base64(_graphql_name(type_), pk))
    return str(pk)


def _pk_of(type_: type, id: Any) -> Any:
    """The primary key an ``id`` argument names (relay types take global ids)."""
    if id is None or not (isinstance(type_, type) and issubclass(type_, relay.Node)):
        return id
    try:
        type_name, pk = relay.from_base64(id)
    except Exception:  # malformed: no row has it
        raise GraphQLError(f"Invalid id {id!r}.", extensions={"code": "BAD_USER_INPUT"}) from None
    if type_name != _graphql_name(type_):
        raise GraphQLError(f"Id {id!r} is not a {_graphql_name(type_)}.",
                           extensions={"code": "BAD_USER_INPUT"})
    return pk


_event_types: dict[type, type] = {}


def event_type(type_: type) -> type:
    """The ``<Name>Event`` type of a strawberry_django type (created once, then cached)."""
    if type_ in _event_types:
        return _event_types[type_]
    name = _graphql_name(type_)
    base = name[: -len("Type")] if name.endswith("Type") and len(name) > 4 else name
    namespace = {
        "__annotations__": {"op": ChangeOp, "id": strawberry.ID, "cursor": str, "node": type_},
        "__doc__": f"A committed change to a {base}.",
    }
    cls = strawberry.type(type(f"{base}Event", (), namespace), name=f"{base}Event")
    _event_types[type_] = cls
    return cls


def _filter_condition(filters: Any, queryset: Any, info: Info | None) -> RowFilter:
    filtered_qs, q = process_filters(filters, queryset, info)
    check_filter(q)  # before it is accepted: what it may cost every other subscriber
    # a custom filter method may have changed the queryset itself: then Q alone is not the
    # whole condition and deleted rows cannot be judged by it
    exact_q = q if str(filtered_qs.query) == str(queryset.query) else None
    return RowFilter(filtered_qs.filter(q) if q else filtered_qs, exact_q)


async def listen(
    info: Info,
    type_: type,
    *,
    filters: Any = None,
    where: Q | None = None,
    pk: Any = None,
    permission: Permission | None = None,
    after: str | None = None,
    _share: bool = False,
) -> AsyncIterator[Change]:
    """Stream the committed changes to ``type_``'s model that this subscriber may see.

    - ``filters``: a strawberry-django filter input value (as the field received it);
    - ``where``: any ``Q`` on the model;
    - ``pk``: watch one row only;
    - ``after``: the ``cursor`` of the last change the client received: first what it
      missed since (rows it may see as they are now, rows it may no longer see as
      ``DELETED``), then the live changes, with no gap and no duplicate between. A cursor
      the log can no longer resume from ends the stream with
      :class:`~gqlsync.exceptions.ResyncRequired` (``extensions.code == "RESYNC"``);
    - ``permission``: a :class:`~gqlsync.permissions.Permission` (default: the one
      ``@gqlsync.protect`` put on ``type_``); checked now (a GraphQL error if the user may
      not subscribe), on every event (a row the user may not see is never sent; one that
      enters or leaves their view arrives as ``CREATED`` or ``DELETED``) and whenever the
      user's identity changes (logout, deactivation, new groups or permissions).
    """
    sender = current_sender.get() if _share else None
    subscription = await _open(info, type_, filters=filters, where=where, pk=pk,
                               permission=permission, after=after, sender=sender)
    to_change = subscription.to_root
    assert to_change is not None
    try:
        while True:
            # shared frames go straight to the socket's writer; this only wakes for the
            # unshared path and for the end
            yield to_change(await subscription.next())
    finally:
        get_hub().unsubscribe(subscription)


async def _open(
    info: Info,
    type_: type,
    *,
    filters: Any = None,
    where: Q | None = None,
    pk: Any = None,
    permission: Permission | None = None,
    after: str | None = None,
    sender: FrameSender | None = None,
) -> Subscription:
    """Check the subscriber's permission and register its subscription with the hub.

    With a ``sender`` (the operation's way out, from the transport) the subscription is
    shared: the hub runs its document once per event for every subscriber with the same
    document, variables and scope, and writes the frames itself.
    """
    model: type[models.Model] = _definition(type_).model
    registry.register(model)
    label = registry.label_of(model)
    permission = permission if permission is not None else permission_of(type_)
    user = get_user(info)
    base = model._default_manager.all()
    checks: list[RowFilter] = []
    if filters not in (None, strawberry.UNSET):
        checks.append(_filter_condition(filters, base, info))
    if where is not None:
        check_filter(where, trusted=True)
        checks.append(RowFilter.where(base, where))
    group = broker.row_group(label, pk) if pk is not None else broker.model_group(label)
    subscription = Subscription(model=label, group=group, checks=checks, pk=pk,
                                after=_resume_from(after))
    # the type's own get_queryset hides rows from its queries: from its events too
    # (it may read the database, e.g. the user's teams: off the event loop)
    kept = (await sync_to_async(own_rows)(type_, base, info)
            if own_get_queryset(type_) is not None else None)
    if permission is not None:
        rescope = _rescoper(permission, base, kept)
        subscription.rescope = _ending(rescope)
        # permission rules may read the database (user.has_perm): off the event loop
        outcome = await sync_to_async(rescope)(user)
        if isinstance(outcome, Refusal):  # the same refusal a query would get
            raise outcome.error()
        subscription.scope, subscription.view_queryset = outcome
        subscription.depends_on = [broker.model_group(d) for d in permission.depends_on]
    if subscription.view_queryset is None and kept is not None:
        subscription.view_queryset = kept
    context = info.context
    connection = context.get("connection") if isinstance(context, dict) else None
    subscription.connection = connection
    subscription.to_root = _to_change(type_)
    if sender is not None:
        subscription.shared = SharedOperation.of(info._raw_info.schema, sender, context)
        subscription.sender = sender
        if subscription.scope is None:  # no permission: share only with the same user
            subscription.scope = ("user", user.pk) if user.is_authenticated else ("anonymous",)
    hub = get_hub()
    try:
        await hub.subscribe(subscription)
    except BaseException:  # half-registered (a group could not be joined): take it back
        hub.unsubscribe(subscription)
        raise
    return subscription


def _resume_from(after: str | None) -> Position | None:
    """The log position ``after`` names; a GraphQL error (``RESYNC``) if it names none."""
    if after is None or after is strawberry.UNSET:
        return None
    try:
        return Position.parse(after)
    except Gap:
        raise GraphQLError(f"{after!r} is not a cursor this server issued: refetch, then "
                           "subscribe without one.",
                           extensions={"code": ResyncRequired.code}) from None


def _ending(
    rescope: Callable[[Any], tuple[Hashable, Any] | Refusal],
) -> Rescope:
    """``rescope`` as the hub calls it when the user's identity changes: a refusal
    becomes the error that ends the open subscription (the hub knows nothing of
    permissions: it ends what it is told to, with the check's message and code)."""

    def rescoped(user: Any) -> tuple[Hashable, Any] | SubscriptionEnded:
        outcome = rescope(user)
        return outcome.withdrawn() if isinstance(outcome, Refusal) else outcome

    return rescoped


def _rescoper(
    rule: Permission, base: QuerySet[Any], kept: QuerySet[Any] | None,
) -> Callable[[Any], tuple[Hashable, Any] | Refusal]:
    """How a subscription's scope and visible rows follow its user (identity changes);
    ``kept``: the rows the type's own ``get_queryset`` keeps, when it hides some."""

    def rescope(user: Any) -> tuple[Hashable, Any] | Refusal:
        refused = rule.refuse(user)
        if refused is not None:
            return refused
        if rule.tracks_rows():
            rows = kept if kept is not None else base
            return rule.scope(user), rule.filter_queryset(user, rows.all())
        # the rule hides no rows, but the type's own get_queryset may
        return rule.scope(user), (kept.all() if kept is not None else None)

    return rescope


@functools.cache
def _to_change(type_: type) -> Callable[[Delivery], Change]:
    """How a delivery becomes the value of ``type_``'s event field (one per type)."""

    def to_change(delivery: Delivery) -> Change:
        event = delivery.event
        return Change(op=delivery.op, id=_global_id(type_, event.pk), cursor=event.cursor,
                      node=delivery.instance, pk=event.pk, changed=event.changed)

    return to_change


def cursor(type_: type, *, name: str | None = None, description: str | None = None) -> Any:
    """A query field: the cursor a subscription to ``type_``'s changes resumes from *now*.

    Select it in the same query as the rows, before them (fields of a query resolve in
    order), and subscribe with ``after:`` it: whatever changed between the query and the
    subscription arrives first. Rows changed while the query ran may come again, with
    their current state, which folds to the same copy.
    """
    model = _definition(type_).model
    registry.register(model)
    label = registry.label_of(model)

    async def resolver() -> str:
        log = get_log()
        if log is None:
            raise GraphQLError("This server keeps no log to resume from.",
                               extensions={"code": ResyncRequired.code})
        stream = broker.model_group(label)
        position = (await asyncio.to_thread(log.head, stream) if log.blocking
                    else log.head(stream))
        return position.cursor()

    return strawberry.field(resolver=resolver, name=name, description=description or (
        f"Where a {_graphql_name(type_)} subscription started now resumes from "
        "(pass it as `after`)."))


#: a ``where`` function: ``(info, **arguments) -> Q | None`` (sync or async)
Where = Callable[..., Any]
_RESERVED = ("filters", "id", "after", "self", "root")


def _where_parameters(where: Where | None) -> list[inspect.Parameter]:
    """The GraphQL arguments a ``where`` function declares (all but its ``info``)."""
    if where is None:
        return []
    if not callable(where):
        raise TypeError("where= takes a function (info, **arguments) -> Q; for a fixed "
                        "condition write one that returns it")
    parameters = list(inspect.signature(where, eval_str=True).parameters.values())
    if not parameters or parameters[0].name != "info":
        raise TypeError(f"{where.__qualname__}: the first parameter of a where function "
                        "is info (the resolver's Info)")
    declared = []
    for parameter in parameters[1:]:
        if parameter.name in _RESERVED:
            raise TypeError(f"{where.__qualname__}: {parameter.name!r} is an argument every "
                            "generated subscription has; name yours otherwise")
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL,
                              inspect.Parameter.VAR_KEYWORD):
            raise TypeError(f"{where.__qualname__}: declare each argument by name")
        if parameter.annotation is inspect.Parameter.empty:
            raise TypeError(f"{where.__qualname__}: argument {parameter.name!r} needs a "
                            "type annotation (it becomes a GraphQL argument)")
        if (parameter.default is inspect.Parameter.empty
                and type(None) in typing.get_args(parameter.annotation)):
            # optional in GraphQL: a client may leave it out, and the function gets None
            parameter = parameter.replace(default=None)
        declared.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))
    return declared


def _given(declared: list[inspect.Parameter], arguments: dict[str, Any]) -> dict[str, Any]:
    """The where function's arguments as the client gave them, its defaults for the rest
    (``UNSET``, which Strawberry passes for an omitted argument, included)."""
    given = {}
    for parameter in declared:
        value = arguments.get(parameter.name, strawberry.UNSET)
        if value is strawberry.UNSET and parameter.default is not inspect.Parameter.empty:
            value = parameter.default
        if value is not strawberry.UNSET:
            given[parameter.name] = value
    return given


async def _condition(where: Where | None, info: Info, arguments: dict[str, Any]) -> Q | None:
    """Call the field's ``where`` function: a sync one off the event loop (it usually
    reads the database, as an access check does)."""
    if where is None:
        return None
    if inspect.iscoroutinefunction(where):
        found = await where(info, **arguments)
    else:
        found = await sync_to_async(where)(info, **arguments)
    if found is not None and not isinstance(found, Q):
        raise TypeError(f"{where.__qualname__} returned {type(found).__name__}, not a Q")
    return found


def subscription(
    type_: type,
    *,
    filters: type | None = None,
    permission: Permission | None = None,
    where: Where | None = None,
    name: str | None = None,
    description: str | None = None,
) -> Any:
    """A subscription field streaming ``<Type>Event`` for every committed change.

    ``filters`` defaults to the filter input declared on the type
    (``@strawberry_django.type(Model, filters=...)``); pass ``permission`` to restrict who
    may subscribe and which rows each subscriber receives.

    ``where`` adds arguments of your own and the condition they make: a function
    ``(info, **arguments) -> Q`` (sync or async; a sync one runs off the event loop)
    whose annotated parameters become the field's arguments. It runs once, when a client
    subscribes: raise a ``GraphQLError`` there to refuse (an access check), return the
    ``Q`` the rows must match (or None). The field keeps shared execution, which a
    hand-written ``listen()`` resolver does not::

        def in_room(info: Info, room: str) -> Q:
            check_member(gqlsync.get_user(info), room)  # raises GraphQLError
            return Q(room__name=room)

        message_changed = gqlsync.subscription(MessageType, where=in_room)
    """
    definition = _definition(type_)
    registry.register(definition.model)
    event_cls = event_type(type_)
    filter_type = filters if filters is not None else definition.filters
    declared = _where_parameters(where)

    async def resolver(
        info: Info, filters: Any = None, id: strawberry.ID | None = None,
        after: str | None = None, **arguments: Any,
    ) -> AsyncGenerator[Any, None]:
        condition = await _condition(where, info, _given(declared, arguments))
        async for change in listen(
            info, type_, filters=filters, where=condition, pk=_pk_of(type_, id),
            permission=permission, after=after, _share=True,
        ):
            yield change

    async def opener(
        info: Info, sender: FrameSender, filters: Any = None, id: strawberry.ID | None = None,
        after: str | None = None, **arguments: Any,
    ) -> Subscription:
        """The same subscription, opened without a generator (the WebSocket transport's
        own subscribe step for generated fields; see ``gqlsync.transport.subscribe``)."""
        condition = await _condition(where, info, _given(declared, arguments))
        return await _open(info, type_, filters=filters, where=condition,
                           pk=_pk_of(type_, id), permission=permission, after=after,
                           sender=sender)

    setattr(resolver, OPENER, opener)

    params = [
        inspect.Parameter("info", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Info),
        *declared,
        inspect.Parameter(
            "id", inspect.Parameter.KEYWORD_ONLY, default=None,
            annotation=strawberry.ID | None,
        ),
        inspect.Parameter(
            "after", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=str | None,
        ),
    ]
    annotations: dict[str, Any] = {
        "info": Info,
        **{p.name: p.annotation for p in declared},
        "id": strawberry.ID | None,
        "after": str | None,
        "return": AsyncGenerator[event_cls, None],  # type: ignore[valid-type]
    }
    if filter_type is not None:
        params.append(inspect.Parameter(
            "filters", inspect.Parameter.KEYWORD_ONLY, default=None,
            annotation=filter_type | None,
        ))
        annotations["filters"] = filter_type | None
    cast(Any, resolver).__signature__ = inspect.Signature(
        params, return_annotation=annotations["return"]
    )
    resolver.__annotations__ = annotations
    field: Callable[..., Any] = strawberry.subscription
    return field(resolver, name=name, description=description)

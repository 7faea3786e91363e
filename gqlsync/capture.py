"""Capture: turn ORM writes into events, and publish them when the transaction commits.

Sources of changes, all ending in :func:`record`:

- ``post_save``, ``post_delete`` and ``m2m_changed`` of registered models;
- :class:`TrackedQuerySet` for the bulk operations that send no signals
  (``update``, ``bulk_create``, ``bulk_update``; a queryset ``delete`` sends ``post_delete``
  for registered models, so it needs nothing more);
- :func:`notify` for anything else: raw SQL, other programs, data migrations.

Buffering. Outside a transaction an event is published at once. Inside one, it waits in a
per-transaction buffer and goes out in ``transaction.on_commit``, coalesced per row
(:meth:`Event.merge`), in the order the rows were last touched. A rolled-back transaction
publishes nothing, and so does a rolled-back savepoint: each change registers its own
``on_commit`` marker, which Django discards with the savepoint, and the buffer only keeps
the changes whose marker ran. The flush itself is kept last in the commit hooks and outside
every savepoint, so it runs once, after all the markers.

The write path knows nothing about subscribers or sockets: it ends at :mod:`gqlsync.broker`.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import time
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from django.db import DEFAULT_DB_ALIAS, models, router, transaction
from django.db.models.signals import (
    m2m_changed,
    post_delete,
    post_init,
    post_save,
    pre_delete,
    pre_save,
)

from gqlsync import broker, registry
from gqlsync.events import IDENTITY, Event, Op, pk_key, to_primitive

logger = logging.getLogger("gqlsync.capture")

#: the row's committed image, read in pre_save / pre_delete for the post_ signal
_IMAGE = "_gqlsync_image"
_PRE_CLEAR = "_gqlsync_pre_clear"
_MISSING = object()


# --------------------------------------------------------------------------- buffering


class _Pending:
    __slots__ = ("confirmed", "event")

    def __init__(self, event: Event) -> None:
        self.event = event
        self.confirmed = False

    def confirm(self) -> None:
        self.confirmed = True


class _Flush:
    """The commit hook that publishes one transaction's surviving, coalesced changes."""

    def __init__(self) -> None:
        self.pending: list[_Pending] = []
        # Django logs a failing robust hook by its __qualname__, which an instance lacks:
        # without it the log call itself raises, out of the caller's commit
        self.__qualname__ = "gqlsync.capture._Flush"

    def __call__(self) -> None:
        merged: dict[tuple[str, int | str], Event | None] = {}
        for change in self.pending:
            if not change.confirmed:
                continue  # its savepoint was rolled back
            key = (change.event.model, change.event.pk)
            if key in merged:
                previous = merged.pop(key)  # re-insert: order by the row's last touch
                merged[key] = previous.merge(change.event) if previous else change.event
            else:
                merged[key] = change.event
        self.pending.clear()
        events = [e for e in merged.values() if e is not None]
        if events:
            broker.publish(_committed(events))


def _committed(events: list[Event]) -> list[Event]:
    """``events`` stamped with the time of their commit, now (the metrics' latency)."""
    now = time.time()
    return [dataclasses.replace(event, committed_at=now) for event in events]


def record(event: Event, using: str = DEFAULT_DB_ALIAS) -> None:
    """Publish ``event`` when the current transaction on ``using`` commits (now if none)."""
    conn = transaction.get_connection(using)
    if not conn.in_atomic_block:
        if not conn.get_autocommit():
            logger.warning("gqlsync: change to %s outside atomic() in manual mode", event.model)
        try:
            broker.publish(_committed([event]))
        except Exception:
            # the write is committed already: report, as the commit hook does, never raise
            logger.exception("gqlsync: publishing a change to %s failed", event.model)
        return
    hooks: list[tuple[set[str], Any, bool]] = conn.run_on_commit
    flush: _Flush | None = None
    for index in range(len(hooks) - 1, -1, -1):
        if isinstance(hooks[index][1], _Flush):
            flush = hooks.pop(index)[1]
            break
    if flush is None:
        flush = _Flush()
    change = _Pending(event)
    flush.pending.append(change)
    transaction.on_commit(change.confirm, using=using)
    # Outside every savepoint (empty set), robust: a failed publish is logged, it does not
    # turn a committed write into an exception for the caller.
    hooks.append((set(), flush, True))


# --------------------------------------------------------------------------- helpers


def _committed_image(instance: models.Model, using: str) -> dict[str, Any] | None:
    """The row's values as the database holds them now (committed, or written earlier in
    this transaction), before this write: every concrete field, by attname; ``None`` if
    there is no such row.

    This, not what the instance remembers of itself, is what a change is judged against:
    a rolled-back save, ``refresh_from_db()``, ``QuerySet.update()``, ``F()`` expressions
    and database defaults all leave an instance's memory of its row wrong. One query by
    primary key per save or delete of a registered model.
    """
    if instance.pk is None:
        return None
    attnames = [f.attname for f in instance._meta.concrete_fields]
    image: dict[str, Any] | None = (
        type(instance)._base_manager.using(using).filter(pk=instance.pk)
        .values(*attnames).first()
    )
    return image


def _after_image(instance: models.Model, reg: registry.Registration,
                 using: str) -> dict[str, Any] | None:
    """The row's travelling values as this save wrote them: from the instance, or read
    back when the database wrote some of them (``F()``, deferred fields). ``None``: the
    row is gone already (deleted by a trigger)."""
    values = instance.__dict__
    if all(name in values and not hasattr(values[name], "resolve_expression")
           for name in reg.snapshot_fields):
        return {name: to_primitive(values[name]) for name in reg.snapshot_fields}
    row = (type(instance)._base_manager.using(using).filter(pk=instance.pk)
           .values(*reg.snapshot_fields).first())
    return None if row is None else {k: to_primitive(v) for k, v in row.items()}


def _differs(field: Any, old: Any, new: Any) -> bool:
    if hasattr(new, "resolve_expression"):  # F(), Concat(...): written by the database
        return True
    try:
        return bool(field.to_python(new) != old)
    except Exception:  # a value the field cannot read back: assume it changed
        return True


def _changes(
    instance: models.Model, image: dict[str, Any], update_fields: Iterable[str] | None
) -> tuple[tuple[str, ...], dict[str, Any] | None]:
    """Names of the fields this save changed, and their committed previous values (the
    registration's travelling fields only), against the row's committed ``image``."""
    reg = registry.get(instance)
    names: list[str] = []
    before: dict[str, Any] = {}
    wanted = set(update_fields) if update_fields is not None else None
    for f in instance._meta.concrete_fields:
        if wanted is not None and f.name not in wanted and f.attname not in wanted:
            continue
        new = instance.__dict__.get(f.attname, _MISSING)
        if new is _MISSING or f.attname not in image:  # deferred and not written
            continue
        old = image[f.attname]
        if not _differs(f, old, new):
            continue
        names.append(f.name)
        if f.attname in reg.snapshot_fields:
            before[f.attname] = to_primitive(old)
    if not names:
        # Nothing changed (a save of identical values): say "unknown" rather than
        # "nothing", as a save may be meant to announce the row.
        return (), None
    return tuple(names), before


#: set while a :class:`TrackedQuerySet` deletes rows its collector has just read: their
#: instances are the rows as committed, and need no second read each
_fresh_deletes: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "gqlsync_fresh_deletes", default=False)


# --------------------------------------------------------------------------- signals


def _on_pre_save(
    sender: type[models.Model], instance: models.Model, raw: bool = False,
    using: str = DEFAULT_DB_ALIAS, **_: Any,
) -> None:
    if raw:
        return
    instance.__dict__[_IMAGE] = _committed_image(instance, using)


def _on_post_save(
    sender: type[models.Model],
    instance: models.Model,
    created: bool,
    raw: bool = False,
    using: str = DEFAULT_DB_ALIAS,
    update_fields: Iterable[str] | None = None,
    **_: Any,
) -> None:
    if raw:  # loaddata: fixtures are not user changes
        return
    reg = registry.get(sender)
    label = reg.label
    image = instance.__dict__.pop(_IMAGE, _MISSING)
    after = _after_image(instance, reg, using)
    if created or image is None:  # image None: a save() with a new pk inserted it
        event = Event(label, pk_key(instance.pk), Op.CREATED, after=after)
    elif image is _MISSING:  # connected between pre_save and post_save: unknown
        event = Event(label, pk_key(instance.pk), Op.UPDATED, after=after)
    else:
        changed, before = _changes(instance, image, update_fields)
        event = Event(label, pk_key(instance.pk), Op.UPDATED, changed, before, after=after)
    record(event, using)


def _on_post_delete(
    sender: type[models.Model], instance: models.Model, using: str = DEFAULT_DB_ALIAS, **_: Any
) -> None:
    label = registry.label_of(sender)
    reg = registry.get(label)
    image = instance.__dict__.pop(_IMAGE, None)
    committed = instance if image is None else type(instance).from_db(
        using, list(image), list(image.values()))
    record(Event(label, pk_key(instance.pk), Op.DELETED,
                 before=registry.last_state(committed, reg)), using)


def _on_pre_delete(
    sender: type[models.Model], instance: models.Model, using: str = DEFAULT_DB_ALIAS, **_: Any
) -> None:
    # the last state subscribers get is the committed row, not the instance's memory
    # (``m.text = "draft"; m.delete()`` must not send "draft"); rows a tracked
    # queryset's delete has just read are that already
    if not _fresh_deletes.get():
        instance.__dict__[_IMAGE] = _committed_image(instance, using)


def _on_m2m_changed(
    sender: type[models.Model],
    instance: models.Model,
    action: str,
    reverse: bool,
    model: type[models.Model],
    pk_set: set[Any] | None,
    using: str = DEFAULT_DB_ALIAS,
    **_: Any,
) -> None:
    if action == "pre_clear":
        # post_clear gets no pk_set: remember who was related before the clear
        field = _m2m_field(type(instance), model, sender, reverse)
        if field is not None and registry.is_registered(model):
            manager = getattr(instance, field[0])
            instance.__dict__[_PRE_CLEAR] = set(manager.values_list("pk", flat=True))
        return
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if action == "post_clear":
        pk_set = instance.__dict__.pop(_PRE_CLEAR, set())
    names = _m2m_field(type(instance), model, sender, reverse)
    if names is None:
        return
    own_name, other_name = names
    if registry.is_registered(type(instance)):
        record(Event(registry.label_of(instance), pk_key(instance.pk), Op.UPDATED, (own_name,)),
               using)
    if registry.is_registered(model):
        label = registry.label_of(model)
        for pk in sorted(pk_set or (), key=str):
            record(Event(label, pk_key(pk), Op.UPDATED, (other_name,)), using)


def _m2m_field(
    instance_model: type[models.Model],
    other_model: type[models.Model],
    through: type[models.Model],
    reverse: bool,
) -> tuple[str, str] | None:
    """(name on the instance's side, name on the other side) of the relation ``through``."""
    forward_model = other_model if reverse else instance_model
    for field in forward_model._meta.many_to_many:
        if field.remote_field.through is through:
            forward = field.name
            backward = field.related_query_name()
            return (backward, forward) if reverse else (forward, backward)
    return None


def _connect(reg: registry.Registration) -> None:
    uid = f"gqlsync:{reg.label}"
    pre_save.connect(_on_pre_save, sender=reg.model, dispatch_uid=uid, weak=False)
    post_save.connect(_on_post_save, sender=reg.model, dispatch_uid=uid, weak=False)
    pre_delete.connect(_on_pre_delete, sender=reg.model, dispatch_uid=uid, weak=False)
    post_delete.connect(_on_post_delete, sender=reg.model, dispatch_uid=uid, weak=False)


def _on_m2m_any(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    model = kwargs["model"]
    if registry.is_registered(type(instance)) or registry.is_registered(model):
        _on_m2m_changed(sender, instance, **kwargs)


# --------------------------------------------------------------------------- identity

_IDENTITY_FIELDS = ("is_active", "password", "is_staff", "is_superuser")
_USER_INITIAL = "_gqlsync_identity"


def identity_changed(user_pk: Any, what: str, using: str = DEFAULT_DB_ALIAS) -> None:
    """Tell every process that ``user_pk``'s identity changed (``what`` names how).

    gqlsync calls this for logouts, deactivation, password, group and permission changes;
    call it yourself when something else your permissions read about a user changes.
    """
    record(Event(IDENTITY, pk_key(user_pk), Op.UPDATED, (what,)), using)


def _on_user_init(sender: type[models.Model], instance: models.Model, **_: Any) -> None:
    values = instance.__dict__
    instance.__dict__[_USER_INITIAL] = {f: values[f] for f in _IDENTITY_FIELDS if f in values}


def _on_user_save(
    sender: type[models.Model], instance: models.Model, created: bool, raw: bool = False,
    using: str = DEFAULT_DB_ALIAS, **_: Any,
) -> None:
    initial = instance.__dict__.get(_USER_INITIAL) or {}
    _on_user_init(sender, instance)
    if created or raw:
        return
    current = instance.__dict__
    changed = [f for f in _IDENTITY_FIELDS
               if f in current and initial.get(f, _MISSING) != current[f]]
    for what in changed:
        identity_changed(instance.pk, what, using)


def _on_user_delete(
    sender: type[models.Model], instance: models.Model, using: str = DEFAULT_DB_ALIAS, **_: Any
) -> None:
    record(Event(IDENTITY, pk_key(instance.pk), Op.DELETED), using)


def _on_logout(sender: Any, request: Any = None, user: Any = None, **_: Any) -> None:
    if user is not None and user.pk is not None:
        identity_changed(user.pk, "logout")


def _on_auth_m2m(
    sender: type[models.Model], instance: models.Model, action: str, reverse: bool,
    model: type[models.Model], pk_set: set[Any] | None, using: str = DEFAULT_DB_ALIAS,
    **_: Any,
) -> None:
    """Group membership and permission grants: tell every affected user."""
    if action == "pre_clear":
        instance.__dict__[_PRE_CLEAR + "auth"] = _affected_users(sender, instance, None, True)
        return
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if action == "post_clear":
        users = instance.__dict__.pop(_PRE_CLEAR + "auth", set())
    else:
        users = _affected_users(sender, instance, pk_set, False)
    for pk in sorted(users, key=str):
        identity_changed(pk, "permissions", using)


def _affected_users(
    through: type[models.Model], instance: models.Model, pk_set: set[Any] | None,
    everyone_related: bool,
) -> set[Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.contrib.auth.models import Permission as AuthPermission

    user_model = get_user_model()
    if isinstance(instance, user_model):
        return {instance.pk}
    if isinstance(instance, Group):
        if through is Group.permissions.through:
            return set(user_model._default_manager.filter(groups=instance)
                       .values_list("pk", flat=True))
        # group.user_set.add(...): the users named, or every member for a clear
        if everyone_related or pk_set is None:
            return set(user_model._default_manager.filter(groups=instance)
                       .values_list("pk", flat=True))
        return set(pk_set)
    if isinstance(instance, AuthPermission):
        if through is Group.permissions.through:
            groups = (pk_set if pk_set is not None and not everyone_related
                      else instance.group_set.values_list("pk", flat=True))
            return set(user_model._default_manager.filter(groups__in=list(groups))
                       .values_list("pk", flat=True))
        if everyone_related or pk_set is None:
            return set(instance.user_set.values_list("pk", flat=True))
        return set(pk_set)
    return set()


def _connect_identity() -> None:
    from django.apps import apps
    from django.contrib.auth import get_user_model
    from django.contrib.auth.signals import user_logged_out

    if not apps.is_installed("django.contrib.auth"):
        return
    from django.contrib.auth.models import Group

    user_model = get_user_model()
    post_init.connect(_on_user_init, sender=user_model, dispatch_uid="gqlsync:identity",
                      weak=False)
    post_save.connect(_on_user_save, sender=user_model, dispatch_uid="gqlsync:identity",
                      weak=False)
    post_delete.connect(_on_user_delete, sender=user_model, dispatch_uid="gqlsync:identity",
                        weak=False)
    user_logged_out.connect(_on_logout, dispatch_uid="gqlsync:identity", weak=False)
    throughs = [Group.permissions.through]
    for name in ("groups", "user_permissions"):
        try:
            field: Any = user_model._meta.get_field(name)
        except Exception:  # a custom user model without them
            continue
        throughs.append(field.remote_field.through)
    for through in throughs:
        m2m_changed.connect(_on_auth_m2m, sender=through,
                            dispatch_uid=f"gqlsync:identity:{through._meta.label}", weak=False)


def connect() -> None:
    """Connect the receivers (idempotent; :class:`gqlsync.apps.GQLSyncConfig` calls it)."""
    registry.on_register(_connect)
    # m2m "through" models may still be strings when a model registers: listen to all
    m2m_changed.connect(_on_m2m_any, dispatch_uid="gqlsync:m2m", weak=False)
    _connect_identity()


# --------------------------------------------------------------------------- bulk + notify

_M = TypeVar("_M", bound=models.Model)


class TrackedQuerySet(models.QuerySet[_M], Generic[_M]):
    """A queryset whose bulk writes, which send no signals, still publish events.

    ``update()`` reads the affected keys (and the previous values of the updated fields)
    before it writes, in the same transaction; ``bulk_update()`` goes through it.

    Use ``objects = gqlsync.TrackedManager()`` on a registered model, or
    ``TrackedQuerySet.as_manager()``, or subclass it for your own queryset methods.
    """

    def update(self, **kwargs: Any) -> int:
        if not registry.is_registered(self.model):
            return super().update(**kwargs)
        reg = registry.get(self.model)
        fields: list[Any] = [self.model._meta.get_field(name) for name in kwargs]
        attnames = [f.attname for f in fields if getattr(f, "attname", None)]
        travelling = [a for a in attnames if a in reg.snapshot_fields]
        with transaction.atomic(using=self.db, savepoint=False):
            rows = list(self.values("pk", *travelling))
            count = super().update(**kwargs)
            names = tuple(f.name for f in fields)
            # what the update wrote (expressions included), for events handled late
            after = {pk_key(row["pk"]): {k: to_primitive(v) for k, v in row.items()
                                         if k in reg.snapshot_fields}
                     for row in self.model._base_manager.using(self.db)
                     .filter(pk__in=[r["pk"] for r in rows])
                     .values("pk", *reg.snapshot_fields)} if rows else {}
            for row in rows:
                before = {a: to_primitive(row[a]) for a in travelling}
                record(Event(reg.label, pk_key(row["pk"]), Op.UPDATED, names, before,
                             after=after.get(pk_key(row["pk"]))), self.db)
        return count

    def bulk_create(self, objs: Iterable[_M], *args: Any, **kwargs: Any) -> list[_M]:
        created = super().bulk_create(objs, *args, **kwargs)
        if registry.is_registered(self.model):
            # update_conflicts may have updated existing rows: say UPDATED, which
            # subscribers treat as "reload"; ignore_conflicts leaves pks unknown.
            op = Op.UPDATED if kwargs.get("update_conflicts") else Op.CREATED
            reg = registry.get(self.model)
            for obj in created:
                if obj.pk is not None:
                    after = (None if kwargs.get("update_conflicts")
                             else _after_image(obj, reg, self.db))
                    record(Event(reg.label, pk_key(obj.pk), op, after=after), self.db)
        return created

    def bulk_update(
        self, objs: Iterable[_M], fields: Iterable[str], batch_size: int | None = None
    ) -> int:
        # Django's bulk_update runs this queryset's update() per batch, which publishes
        # each row with its previous values read from the database.
        return super().bulk_update(objs, fields, batch_size=batch_size)

    def delete(self) -> tuple[int, dict[str, int]]:
        # the collector reads the rows it deletes: their instances are the committed
        # rows, so their last state needs no second read per row
        token = _fresh_deletes.set(True)
        try:
            return super().delete()
        finally:
            _fresh_deletes.reset(token)


class TrackedManager(models.Manager.from_queryset(TrackedQuerySet)):  # type: ignore[misc]
    """``objects = gqlsync.TrackedManager()``: a manager with :class:`TrackedQuerySet`."""


def notify(
    model: type[models.Model] | models.Model | str,
    pk: Any = None,
    op: Op | str = Op.UPDATED,
    *,
    changed: Iterable[str] = (),
    using: str | None = None,
) -> None:
    """Publish a change the ORM did not see (raw SQL, another program, a migration).

    ``model`` is a registered model, an instance of one (then ``pk`` defaults to its pk),
    or a label such as ``"bookstore.book"``. Inside a transaction the event waits for the
    commit like any other; for ``DELETED`` pass an instance, so that subscribers get its
    last state.
    """
    reg = registry.get(model)
    instance = model if isinstance(model, models.Model) else None
    if pk is None:
        if instance is None:
            raise TypeError("notify() needs pk= unless given a model instance")
        pk = instance.pk
    op = Op(op) if isinstance(op, str) else op
    before = registry.last_state(instance, reg) if (op is Op.DELETED and instance) else None
    db = using or router.db_for_write(reg.model)
    record(Event(reg.label, pk_key(pk), op, tuple(changed), before), db)

"""Which models broadcast their changes.

A model broadcasts once it is registered, with ``@gqlsync.register`` on the model class or
by using it in a ``gqlsync.subscription(...)`` field. Register in ``models.py`` so that
*every* process that writes (web workers, management commands, Celery tasks) captures its
changes, not only the processes that load the GraphQL schema.

The registration also says which field values may travel in events (``fields``): the
``before`` values of updates and the last state of deleted rows. By default that is every
concrete field but the ones named in ``exclude``; list ``fields`` to be explicit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from django.db import models

from gqlsync.exceptions import NotRegisteredError

M = TypeVar("M", bound=type[models.Model])


@dataclass(frozen=True, slots=True)
class Registration:
    model: type[models.Model]
    label: str
    #: attnames (``author_id``, not ``author``) whose values may travel in events
    snapshot_fields: tuple[str, ...]


_registry: dict[str, Registration] = {}
_listeners: list[Callable[[Registration], None]] = []


def label_of(model: type[models.Model] | models.Model) -> str:
    """``"app_label.modelname"``, the key events use."""
    return model._meta.label_lower


def _snapshot_fields(
    model: type[models.Model], fields: Iterable[str] | None, exclude: Iterable[str]
) -> tuple[str, ...]:
    concrete = {f.name: f for f in model._meta.concrete_fields}
    names = list(fields) if fields is not None else list(concrete)
    unknown = [n for n in (*names, *exclude) if n not in concrete]
    if unknown:
        from gqlsync.exceptions import ConfigurationError

        raise ConfigurationError(f"{label_of(model)} has no concrete field(s) {unknown}")
    skip = set(exclude)
    attnames = [concrete[n].attname for n in names if n not in skip]
    pk = model._meta.pk
    assert pk is not None
    if pk.attname not in attnames:
        attnames.insert(0, pk.attname)
    return tuple(attnames)


@overload
def register(model: M, /) -> M: ...
@overload
def register(
    *, fields: Iterable[str] | None = None, exclude: Iterable[str] = ()
) -> Callable[[M], M]: ...
def register(
    model: M | None = None,
    /,
    *,
    fields: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
) -> M | Callable[[M], M]:
    """Make a model broadcast its committed changes. Usable bare or with arguments::

        @gqlsync.register
        class Book(models.Model): ...

        @gqlsync.register(exclude=["internal_notes"])
        class Order(models.Model): ...

    Registering again is allowed and keeps the first registration's options unless new
    ones are given.
    """

    def decorate(cls: M) -> M:
        label = label_of(cls)
        existing = _registry.get(label)
        if existing is not None and fields is None and not exclude:
            return cls
        reg = Registration(cls, label, _snapshot_fields(cls, fields, exclude))
        _registry[label] = reg
        for listener in _listeners:
            listener(reg)
        return cls

    return decorate(model) if model is not None else decorate


def get(model: type[models.Model] | models.Model | str) -> Registration:
    label = model if isinstance(model, str) else label_of(model)
    try:
        return _registry[label]
    except KeyError:
        raise NotRegisteredError(
            f"{label} is not registered with gqlsync; decorate it with @gqlsync.register"
        ) from None


def is_registered(model: type[models.Model]) -> bool:
    return label_of(model) in _registry


def registrations() -> list[Registration]:
    return list(_registry.values())


def on_register(listener: Callable[[Registration], None]) -> None:
    """Call ``listener`` for every registration, past and future (capture uses this)."""
    _listeners.append(listener)
    for reg in list(_registry.values()):
        listener(reg)


def snapshot(instance: models.Model, reg: Registration | None = None) -> dict[str, Any]:
    """The instance's travelling field values, as JSON primitives."""
    from gqlsync.events import to_primitive

    reg = reg or get(instance)
    return {name: to_primitive(getattr(instance, name, None)) for name in reg.snapshot_fields}


def last_state(instance: models.Model, reg: Registration | None = None) -> dict[str, Any]:
    """A deleted row's snapshot, with the rows its travelling foreign keys point to.

    In a cascade the row a foreign key points to may be deleted in the same transaction,
    so subscribers could not load it any more. When that model is registered too, its
    snapshot travels under the field's name (``"author": {...}``, beside ``"author_id"``),
    one level deep; unregistered targets are loaded by id as usual.
    """
    from django.core.exceptions import ObjectDoesNotExist

    reg = reg or get(instance)
    values = snapshot(instance, reg)
    for field in instance._meta.concrete_fields:
        target = field.related_model if field.is_relation else None
        if target is None or field.attname not in reg.snapshot_fields:
            continue
        if not isinstance(target, type) or not is_registered(target):
            continue
        try:
            related = getattr(instance, field.name)
        except ObjectDoesNotExist:
            continue
        if related is not None:
            values[field.name] = snapshot(related)
    return values

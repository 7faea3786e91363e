"""The permission hook: one object that guards queries, mutations and subscriptions.

A :class:`Permission` answers, for a user:

- :meth:`~Permission.has_operation`: may they run the field at all?
- :meth:`~Permission.filter_queryset` (or the simpler :meth:`~Permission.visible`, a
  ``Q``): which rows may they see? It filters every query of the protected type and, for
  subscriptions, decides on *every event* who receives the row;
- :meth:`~Permission.has_object`: may they see or change this object (mutations);
- :meth:`~Permission.scope`: a hashable key such that two users with the same scope see
  exactly the same rows and fields. The default is the user's id; return something
  coarser (``("staff",)``) only when your rule really treats those users alike.

``depends_on`` names the models (``"chat.room"``) whose changes can change which rows a
user sees, so that subscriptions learn of rows entering or leaving their view when, say,
a room's members change. Changes to the user itself (deactivation, password, groups,
permissions, logout) are always followed.

One object serves every entry point:

- ``@gqlsync.protect(permission)`` on a strawberry_django type filters its querysets
  (list fields, relations through the optimizer) and becomes the default permission of
  ``gqlsync.subscription(Type)`` and ``gqlsync.listen(info, Type)``;
- ``extensions=[gqlsync.Guard(permission)]`` on any query or mutation field refuses
  users for whom ``has_operation`` is false;
- ``await gqlsync.get_object(info, Book, id, "change")`` in a mutation fetches the row
  among those the user may see and checks ``has_object``;
  ``await gqlsync.authorize(info, obj, "change")`` checks an object already in hand.

When one of them says no, the client is told which check failed, as a
:class:`Refusal`: an anonymous user gets ``UNAUTHENTICATED`` ("You must be signed in."),
a signed-in one ``FORBIDDEN`` with the message of the check that refused them (staff
only, a missing Django permission, "You may not change this book." for a row they see
but may not change). A row they may not see is ``NOT_FOUND`` ("No such book."), the very
answer a missing id gets, so that refusals do not tell which ids exist. The same refusal
answers a query, a mutation and a subscription, and ends a subscription whose user loses
the permission. Each check has its default message; ``messages`` overrides them per
check. Refusals are answers, not faults: they raise :class:`RefusalError`, which
``gqlsync.logging`` keeps out of Strawberry's error log.

It knows users and rows, not protocols or sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar, cast

from asgiref.sync import sync_to_async
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import models
from django.db.models import Q, QuerySet
from graphql import GraphQLError
from strawberry.extensions.field_extension import (
    AsyncExtensionResolver,
    FieldExtension,
    SyncExtensionResolver,
)
from strawberry.types import Info

from gqlsync.auth import User, get_user
from gqlsync.exceptions import SubscriptionEnded

_QS = TypeVar("_QS", bound=QuerySet[Any])
_T = TypeVar("_T", bound=type)
_M = TypeVar("_M", bound=models.Model)

#: ``extensions.code`` of a refusal of an anonymous user: signing in may help
UNAUTHENTICATED = "UNAUTHENTICATED"
#: ``extensions.code`` of a refusal of a signed-in user
FORBIDDEN = "FORBIDDEN"
#: ``extensions.code`` of a row that does not exist *or* that the user may not see
NOT_FOUND = "NOT_FOUND"

#: Every check a refusal can name: its ``extensions.code`` and default message. A
#: message may hold ``{action}`` and ``{model}`` (the object checks: ``{model}`` is the
#: model's ``verbose_name``) or ``{perms}`` (``DjangoPerms``); a check of your own (see
#: :meth:`Permission.failed_check`) is ``FORBIDDEN`` with the ``operation`` message
#: unless ``messages`` names it.
CHECKS: Mapping[str, tuple[str, str]] = MappingProxyType({
    # has_operation said no to a user who is not signed in (or no longer active)
    "authenticated": (UNAUTHENTICATED, "You must be signed in."),
    # IsStaff said no to a signed-in user
    "staff": (FORBIDDEN, "You must be a staff member."),
    # DjangoPerms said no to a signed-in user
    "perms": (FORBIDDEN, "You need the permission {perms}."),
    # your has_operation said no to a signed-in user
    "operation": (FORBIDDEN, "You do not have permission to do this."),
    # has_object said no to a signed-in user, for a row they may see (get_object(),
    # authorize())
    "object": (FORBIDDEN, "You may not {action} this {model}."),
    # get_object() found no row among those the user may see: missing or hidden, one
    # answer, so that a refusal never tells which ids exist
    "not_found": (NOT_FOUND, "No such {model}."),
})
#: the checks about one row: never worded by the legacy ``message``
_ROW_CHECKS = frozenset({"object", "not_found"})

_PLACEHOLDER = re.compile(r"\{(action|model|perms)\}")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a user was refused: the check that said no, and what the client is told."""

    #: the check that failed: a key of :data:`CHECKS`, or one of your own
    check: str
    #: the GraphQL error's ``extensions.code``: ``UNAUTHENTICATED`` or ``FORBIDDEN``
    code: str
    message: str

    def error(self) -> RefusalError:
        """The GraphQL error a query, mutation or new subscription is refused with."""
        return RefusalError(self)

    def withdrawn(self) -> SubscriptionEnded:
        """The error ending an open subscription whose user no longer passes the check:
        the same message (after a word of what happened) and the same code."""
        ended = SubscriptionEnded(
            f"Your permission to this subscription was withdrawn: {self.message}")
        ended.code = self.code
        ended.extensions = {"code": self.code}
        return ended


class RefusalError(GraphQLError):
    """A :class:`Refusal` as the GraphQL error the client receives.

    Its own class so that an expected answer can be told from a fault:
    :class:`gqlsync.logging.RefusalFilter` logs it on one line at INFO, where Strawberry
    logs every error of a resolver at ERROR with its traceback.
    """

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message, extensions={"code": refusal.code})
        self.refusal = refusal


#: has_operation's answers while one refusal is worked out (see :func:`_asking_once`)
_ANSWERS: ContextVar[dict[tuple[int, int], bool] | None] = ContextVar(
    "gqlsync_operation_answers", default=None)


@contextlib.contextmanager
def _asking_once() -> Iterator[None]:
    """Within the block, a rule's ``has_operation`` is asked at most once per user:
    :meth:`Permission.has_object` asks it, and naming the check that refused asks it
    again, and a rule may read the database to answer."""
    if _ANSWERS.get() is not None:
        yield
        return
    token = _ANSWERS.set({})
    try:
        yield
    finally:
        _ANSWERS.reset(token)


def _may_operate(rule: Permission, user: User) -> bool:
    """``rule.has_operation(user)``, remembered inside :func:`_asking_once`."""
    answers = _ANSWERS.get()
    if answers is None:
        return rule.has_operation(user)
    key = (id(rule), id(user))
    if key not in answers:
        answers[key] = rule.has_operation(user)
    return answers[key]


def _model_name(model: type[models.Model]) -> str:
    """What a message calls a model: its ``verbose_name`` ("message", "blog post")."""
    return str(model._meta.verbose_name)


class Permission:
    """Allows everything; subclass and override what your rule restricts."""

    #: Per-check messages of refusals, overriding :data:`CHECKS`' defaults, e.g.
    #: ``{"authenticated": "Sign in to see your tasks.", "object": "Not your task."}``.
    #: A class attribute, or ``Permission(messages=...)`` for the shipped rules.
    messages: Mapping[str, str] = MappingProxyType({})
    #: labels of models whose changes can change which rows a user sees
    depends_on: tuple[str, ...] = ()
    #: the check :attr:`message` reads: the one this rule's ``has_operation`` is about
    main_check = "operation"

    @property
    def message(self) -> str:
        """The message of this rule's main check (:attr:`main_check`), as a refusal by
        it would say it: "You must be a staff member." for ``IsStaff()``.

        Before ``messages``, rules set ``message`` (``message = "Sign in first."`` on
        the class, or on the instance): one message for every refusal by
        :meth:`has_operation`, whichever check inside it failed. Such a message is still
        honoured there, below ``messages``; refusals about one row (``object``,
        ``not_found``) never take it.
        """
        return self.refusal(self.main_check).message

    @message.setter
    def message(self, value: str) -> None:
        self._legacy_message = value

    _legacy_message: str | None = None

    def _message_set(self) -> str | None:
        """The legacy ``message`` this rule sets, or None: a class attribute of a
        subclass, or a value assigned to the instance."""
        found = inspect.getattr_static(self, "message", None)
        if isinstance(found, property):
            return self._legacy_message
        return found if isinstance(found, str) else None

    def __init__(self, *, messages: Mapping[str, str] | None = None) -> None:
        if messages is not None:
            self.messages = MappingProxyType(dict(messages))

    def has_operation(self, user: User) -> bool:
        return True

    def failed_check(self, user: User) -> str:
        """The check :meth:`has_operation` failed for ``user`` (asked only when it did):
        ``"authenticated"`` for a user who is not signed in, else ``"operation"``.
        Override it to name a check of your own, and give it a message in ``messages``.
        """
        return "authenticated" if not _signed_in(user) else "operation"

    def refuse(self, user: User) -> Refusal | None:
        """Why ``user`` may not run the operation, or None when they may."""
        if _may_operate(self, user):
            return None
        return self.refusal(self.failed_check(user))

    def refuse_object(
        self, user: User, obj: models.Model, action: str = "view",
    ) -> Refusal | None:
        """Why ``user`` may not do ``action`` to ``obj``, or None when they may
        (:meth:`has_object` decides; this only names the check that said no).

        ``has_operation`` is asked once, though both ``has_object`` and the naming of
        the check want its answer."""
        with _asking_once():
            if self.has_object(user, obj, action):
                return None
            refused = self.refuse(user)
        if refused is not None:
            return refused
        if not _signed_in(user):
            return self.refusal("authenticated")
        return self.refusal("object", action=action, model=_model_name(type(obj)))

    def refusal(self, check: str, **values: str) -> Refusal:
        """The refusal for ``check``: its code, and its message from ``messages``, else
        the legacy ``message`` (not for the checks about one row), else :data:`CHECKS`."""
        code, default = CHECKS.get(check, (FORBIDDEN, CHECKS["operation"][1]))
        legacy = self._message_set()
        if check in self.messages:
            template = self.messages[check]
        elif legacy is not None and check not in _ROW_CHECKS:
            return Refusal(check, code, legacy)  # written before templates: verbatim
        else:
            template = default
        values = {**self._message_values(), **values}
        message = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
        return Refusal(check, code, message)

    def _message_values(self) -> dict[str, str]:
        """Values of the placeholders this rule's messages may hold."""
        return {}

    def visible(self, user: User) -> Q:
        """The rows ``user`` may see, as a condition on the model. ``Q()`` is all rows."""
        return Q()

    def filter_queryset(self, user: User, queryset: _QS) -> _QS:
        """The part of ``queryset`` that ``user`` may see (defaults to :meth:`visible`)."""
        condition = self.visible(user)
        return queryset.filter(condition) if condition else queryset

    def tracks_rows(self) -> bool:
        """Whether this rule can hide rows from someone (then subscriptions track the
        visible keys per scope). True when ``visible`` or ``filter_queryset`` is
        overridden; rules that only gate the operation track nothing."""
        cls = type(self)
        return (cls.filter_queryset is not Permission.filter_queryset
                or cls.visible is not Permission.visible)

    def has_object(self, user: User, obj: models.Model, action: str = "view") -> bool:
        """May ``user`` do ``action`` ("view", "change", "delete"…) to ``obj``?"""
        if not _may_operate(self, user):
            return False
        manager = type(obj)._default_manager
        return self.filter_queryset(user, manager.filter(pk=obj.pk)).exists()

    def scope(self, user: User) -> Hashable:
        if not user.is_authenticated:
            return ("anonymous",)
        return ("user", user.pk)


class AllowAny(Permission):
    """Everyone sees every row; every user shares one scope."""

    def scope(self, user: User) -> Hashable:
        return ("any",)


class IsAuthenticated(Permission):
    """Signed-in, active users only; all rows. (strawberry-django's ``IsAuthenticated``.)

    Refuses with the ``authenticated`` check (``UNAUTHENTICATED``).
    """

    main_check = "authenticated"

    def has_operation(self, user: User) -> bool:
        return bool(user.is_authenticated and getattr(user, "is_active", True))

    def scope(self, user: User) -> Hashable:
        return ("authenticated",) if self.has_operation(user) else ("anonymous",)


class IsStaff(Permission):
    """Active staff only; all rows. (strawberry-django's ``IsStaff``.)

    Refuses anonymous users with the ``authenticated`` check, others with ``staff``.
    """

    main_check = "staff"

    def has_operation(self, user: User) -> bool:
        return bool(user.is_authenticated and getattr(user, "is_active", True)
                    and getattr(user, "is_staff", False))

    def failed_check(self, user: User) -> str:
        if _signed_in(user) and not getattr(user, "is_staff", False):
            return "staff"
        return super().failed_check(user)

    def scope(self, user: User) -> Hashable:
        return ("staff",) if self.has_operation(user) else ("not staff", user.pk)


class DjangoPerms(Permission):
    """Django model permissions, as strawberry-django's ``HasPerm`` and ``filter_for_user``.

    ``DjangoPerms("chat.view_message")``: users holding the permission (directly or through
    a group; superusers only with ``with_superuser=True``) may run the operation and see
    every row. With ``object_level=True`` rows are filtered per object with
    strawberry-django's ``filter_for_user`` (django-guardian's object permissions), and
    the operation is open to any signed-in user.

    Refuses anonymous users with the ``authenticated`` check, others with ``perms``
    ("You need the permission chat.view_message.").
    """

    main_check = "perms"

    def __init__(
        self,
        perms: str | Iterable[str],
        *,
        any_perm: bool = True,
        with_superuser: bool = False,
        object_level: bool = False,
        messages: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(messages=messages)
        self.perms = (perms,) if isinstance(perms, str) else tuple(perms)
        self.any_perm = any_perm
        self.with_superuser = with_superuser
        self.object_level = object_level

    def _message_values(self) -> dict[str, str]:
        return {"perms": (" or " if self.any_perm else " and ").join(self.perms)}

    def failed_check(self, user: User) -> str:
        if _signed_in(user) and not self.object_level and not self._holds(user):
            return "perms"
        return super().failed_check(user)

    def _holds(self, user: User) -> bool:
        if not user.is_authenticated or not getattr(user, "is_active", True):
            return False
        if self.with_superuser and getattr(user, "is_superuser", False):
            return True
        if getattr(user, "is_superuser", False):
            # Django's has_perm() says yes to superusers; honour with_superuser=False
            owned = _own_perms(user)
            held = [p in owned for p in self.perms]
        else:
            held = [cast(Any, user).has_perm(p) for p in self.perms]
        return any(held) if self.any_perm else all(held)

    def has_operation(self, user: User) -> bool:
        if self.object_level:
            return bool(user.is_authenticated and getattr(user, "is_active", True))
        return self._holds(user)

    def filter_queryset(self, user: User, queryset: _QS) -> _QS:
        if self.object_level:
            from strawberry_django.utils.query import filter_for_user

            filtered: _QS = filter_for_user(
                queryset, user, self.perms, any_perm=self.any_perm,
                with_superuser=self.with_superuser,
            )
            return filtered
        return queryset if self._holds(user) else queryset.none()

    def scope(self, user: User) -> Hashable:
        if self.object_level:
            return super().scope(user)
        return ("perms", self.perms, self._holds(user))


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _signed_in(user: User) -> bool:
    """Signed in and active: what signing in again cannot fix otherwise."""
    return bool(user.is_authenticated and getattr(user, "is_active", True))


def _own_perms(user: Any) -> set[str]:
    from django.contrib.auth.models import Permission as AuthPermission

    found = AuthPermission.objects.filter(Q(user=user) | Q(group__user=user)).values_list(
        "content_type__app_label", "codename"
    )
    return {f"{app}.{codename}" for app, codename in found}


# --------------------------------------------------------------------------- attaching

_PROTECTED = "__gqlsync_permission__"
_OWN_QUERYSET = "__gqlsync_own_get_queryset__"
#: model label -> the permission of the first protected type over it (for authorize())
_MODEL_PERMISSIONS: dict[str, Permission] = {}


def protect(permission: Permission) -> Callable[[_T], _T]:
    """Guard a strawberry_django type: its querysets only hold rows the user may see.

    ::

        @gqlsync.protect(RoomMembersOnly())
        @strawberry_django.type(Message)
        class MessageType: ...

    Every queryset strawberry-django builds for the type (list fields, nested relations)
    goes through ``permission.filter_queryset``, and subscriptions over the type use the
    same permission on every event.
    """

    def decorate(type_: _T) -> _T:
        previous = type_.__dict__.get("get_queryset")
        previous_func = previous.__func__ if isinstance(previous, classmethod) else None

        def get_queryset(cls: type, /, queryset: Any, info: Info, **kwargs: Any) -> Any:
            if previous_func is not None:
                queryset = previous_func(cls, queryset, info, **kwargs)
            return permission.filter_queryset(get_user(info), queryset)

        type_.get_queryset = classmethod(get_queryset)  # type: ignore[attr-defined]
        setattr(type_, _PROTECTED, permission)
        setattr(type_, _OWN_QUERYSET, previous_func)
        definition = getattr(type_, "__strawberry_django_definition__", None)
        if definition is not None:
            _MODEL_PERMISSIONS.setdefault(definition.model._meta.label_lower, permission)
        return type_

    return decorate


def own_get_queryset(type_: type) -> Callable[..., Any] | None:
    """The ``get_queryset`` the type's author wrote (not the one :func:`protect` adds)."""
    if hasattr(type_, _OWN_QUERYSET):
        found: Any = getattr(type_, _OWN_QUERYSET)
        return found if callable(found) else None
    static = inspect.getattr_static(type_, "get_queryset", None)
    return static.__func__ if isinstance(static, classmethod) else None


def own_rows(type_: type, queryset: QuerySet[Any], info: Info) -> QuerySet[Any] | None:
    """The rows the type's *own* ``get_queryset`` keeps (the one you wrote, without what
    :func:`protect` adds), or None when it has none or it keeps every row (one that only
    joins or defers columns, say). Subscriptions treat such a restriction like a
    permission's: a row that enters it arrives as ``CREATED``, one that leaves as
    ``DELETED``, and nothing outside it is sent."""
    func = own_get_queryset(type_)
    if func is None:
        return None
    kept = func(type_, queryset, info)
    return cast("QuerySet[Any]", kept) if kept.query.where else None


def permission_of(type_: type) -> Permission | None:
    """The permission ``protect()`` attached to a type, if any."""
    found = getattr(type_, _PROTECTED, None)
    return found if isinstance(found, Permission) else None


def forbidden(message: str) -> RefusalError:
    """A ``FORBIDDEN`` GraphQL error (for refusals of your own; rules refuse with
    :meth:`Permission.refuse`, which names the check). Logged as a refusal."""
    return Refusal("own", FORBIDDEN, message).error()


class Guard(FieldExtension):
    """A field extension refusing users for whom ``permission.has_operation`` is false,
    with the refusal of the check that failed (:meth:`Permission.refuse`).

    On a list field too: the client is told, as a subscription would tell it, rather
    than given ``[]`` (strawberry-django's extensions with ``fail_silently=True``).
    """

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    def resolve(
        self, next_: SyncExtensionResolver, source: Any, info: Info, **kwargs: Any
    ) -> Any:
        if _in_event_loop():
            # a sync field of an async execution (strawberry-django's list fields over
            # HTTP and WebSocket): the rule may read the database, so not on the loop
            return self._checked_later(next_, source, info, kwargs)
        refused = self.permission.refuse(get_user(info))
        if refused is not None:
            raise refused.error()
        return next_(source, info, **kwargs)

    async def _checked_later(
        self, next_: SyncExtensionResolver, source: Any, info: Info, kwargs: dict[str, Any]
    ) -> Any:
        refused = await sync_to_async(self.permission.refuse)(get_user(info))
        if refused is not None:
            raise refused.error()
        result = next_(source, info, **kwargs)
        while inspect.isawaitable(result):  # strawberry-django resolves in a thread
            result = await result
        return result

    async def resolve_async(
        self, next_: AsyncExtensionResolver, source: Any, info: Info, **kwargs: Any
    ) -> Any:
        refused = await sync_to_async(self.permission.refuse)(get_user(info))
        if refused is not None:
            raise refused.error()
        return await next_(source, info, **kwargs)


def _rule_for(model: type[models.Model], permission: Permission | None) -> Permission:
    found = permission or _MODEL_PERMISSIONS.get(model._meta.label_lower)
    if found is None:
        raise LookupError(f"no permission protects {model._meta.label}; pass one")
    return found


async def get_object(
    info: Info,
    rows: type[_M] | QuerySet[_M] | models.Manager[_M],
    pk: Any = None,
    action: str = "change",
    permission: Permission | None = None,
) -> _M:
    """The row ``pk`` of ``rows`` (a model, manager or queryset), if the user may do
    ``action`` to it; else raise the refusal of the check that failed.

    ::

        message = await gqlsync.get_object(info, Message.objects.select_related("room"),
                                           id, "change")

    In order: ``has_operation`` (``UNAUTHENTICATED`` for an anonymous user, or the
    rule's own check); then the row, looked up among those ``filter_queryset`` shows the
    user: ``NOT_FOUND`` "No such message." when there is none, whether the id does not
    exist, cannot exist (``"abc"`` for an integer key) or names a row the user may not
    see: one answer, so nobody learns which ids exist; then ``has_object(user, row,
    action)``, ``FORBIDDEN`` "You may not change this message." for a row the user sees
    but may not change. ``pk=None`` takes the one row of ``rows``
    (``Room.objects.filter(name=name)``).

    ``permission`` defaults to the one :func:`protect` put on a type of the model.
    """
    queryset: QuerySet[_M]
    if isinstance(rows, QuerySet):
        queryset = rows
    elif isinstance(rows, models.Manager):
        queryset = rows.all()
    else:
        queryset = rows._default_manager.all()
    rule = _rule_for(queryset.model, permission)
    found = await sync_to_async(_get_object)(rule, get_user(info), queryset, pk, action)
    if isinstance(found, Refusal):
        raise found.error()
    return found


def _get_object(
    rule: Permission, user: User, queryset: QuerySet[_M], pk: Any, action: str,
) -> _M | Refusal:
    with _asking_once():
        refused = rule.refuse(user)
        if refused is not None:
            return refused
        missing = rule.refusal("not_found", model=_model_name(queryset.model))
        if pk is not None:
            try:
                queryset = queryset.filter(pk=pk)
            except (ValueError, TypeError, ValidationError):  # an id no row can have
                return missing
        try:
            obj = rule.filter_queryset(user, queryset).get()
        except ObjectDoesNotExist:
            return missing
        if type(rule).has_object is Permission.has_object:
            # the default has_object: has_operation and "the user sees the row", both
            # just established
            return obj
        return rule.refuse_object(user, obj, action) or obj


async def authorize(
    info: Info, obj: models.Model, action: str = "change",
    permission: Permission | None = None,
) -> None:
    """Raise a GraphQL error unless the user may do ``action`` to ``obj``, an object in
    hand: the refusal of the check that failed (``UNAUTHENTICATED`` for an anonymous
    user, ``FORBIDDEN`` "You may not change this book." for a signed-in one).

    To fetch a row by its id, use :func:`get_object`: it also answers ``NOT_FOUND``,
    alike for a missing row and a hidden one, where fetching the row yourself and then
    calling ``authorize`` tells the client which ids exist.

    ``permission`` defaults to the one :func:`protect` put on a type of ``obj``'s model.
    """
    permission = _rule_for(type(obj), permission)
    user = get_user(info)
    refused = await sync_to_async(permission.refuse_object)(user, obj, action)
    if refused is not None:
        raise refused.error()


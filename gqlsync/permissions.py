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
- ``await gqlsync.authorize(info, obj, "change")`` in a mutation checks ``has_object``.

It knows users and rows, not protocols or sockets.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar, cast

from asgiref.sync import sync_to_async
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

_QS = TypeVar("_QS", bound=QuerySet[Any])
_T = TypeVar("_T", bound=type)

FORBIDDEN = "FORBIDDEN"


class Permission:
    """Allows everything; subclass and override what your rule restricts."""

    #: the message of the GraphQL error when :meth:`has_operation` says no
    message = "You do not have permission to do this."
    #: labels of models whose changes can change which rows a user sees
    depends_on: tuple[str, ...] = ()

    def has_operation(self, user: User) -> bool:
        return True

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
        if not self.has_operation(user):
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
    """Signed-in, active users only; all rows. (strawberry-django's ``IsAuthenticated``.)"""

    message = "You must be signed in."

    def has_operation(self, user: User) -> bool:
        return bool(user.is_authenticated and getattr(user, "is_active", True))

    def scope(self, user: User) -> Hashable:
        return ("authenticated",) if self.has_operation(user) else ("anonymous",)


class IsStaff(Permission):
    """Active staff only; all rows. (strawberry-django's ``IsStaff``.)"""

    message = "You must be a staff member."

    def has_operation(self, user: User) -> bool:
        return bool(user.is_authenticated and getattr(user, "is_active", True)
                    and getattr(user, "is_staff", False))

    def scope(self, user: User) -> Hashable:
        return ("staff",) if self.has_operation(user) else ("not staff", user.pk)


class DjangoPerms(Permission):
    """Django model permissions, as strawberry-django's ``HasPerm`` and ``filter_for_user``.

    ``DjangoPerms("chat.view_message")``: users holding the permission (directly or through
    a group; superusers only with ``with_superuser=True``) may run the operation and see
    every row. With ``object_level=True`` rows are filtered per object with
    strawberry-django's ``filter_for_user`` (django-guardian's object permissions), and
    the operation is open to any signed-in user.
    """

    def __init__(
        self,
        perms: str | Iterable[str],
        *,
        any_perm: bool = True,
        with_superuser: bool = False,
        object_level: bool = False,
    ) -> None:
        self.perms = (perms,) if isinstance(perms, str) else tuple(perms)
        self.any_perm = any_perm
        self.with_superuser = with_superuser
        self.object_level = object_level
        self.message = f"You need the permission {' or '.join(self.perms)}."

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


def forbidden(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": FORBIDDEN})


class Guard(FieldExtension):
    """A field extension refusing users for whom ``permission.has_operation`` is false."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    def resolve(
        self, next_: SyncExtensionResolver, source: Any, info: Info, **kwargs: Any
    ) -> Any:
        if not self.permission.has_operation(get_user(info)):
            raise forbidden(self.permission.message)
        return next_(source, info, **kwargs)

    async def resolve_async(
        self, next_: AsyncExtensionResolver, source: Any, info: Info, **kwargs: Any
    ) -> Any:
        if not await sync_to_async(self.permission.has_operation)(get_user(info)):
            raise forbidden(self.permission.message)
        return await next_(source, info, **kwargs)


async def authorize(
    info: Info, obj: models.Model, action: str = "change",
    permission: Permission | None = None,
) -> None:
    """Raise a FORBIDDEN GraphQL error unless the user may do ``action`` to ``obj``.

    ``permission`` defaults to the one :func:`protect` put on a type of ``obj``'s model.
    """
    permission = permission or _MODEL_PERMISSIONS.get(type(obj)._meta.label_lower)
    if permission is None:
        raise LookupError(f"no permission protects {type(obj)._meta.label}; pass one")
    user = get_user(info)
    if not await sync_to_async(permission.has_object)(user, obj, action):
        raise forbidden(permission.message)


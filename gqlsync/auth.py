"""Who is asking: Django sessions and bearer tokens, for HTTP and WebSocket alike.

A request's user comes from, in order: a bearer token (``Authorization: Bearer <token>``
as an HTTP header, or ``{"authorization": "Bearer <token>"}`` in the WebSocket
``connection_init`` payload), else the Django session cookie, else anonymous.

Tokens are checked by the callable named in ``GQLSYNC["TOKEN_AUTHENTICATOR"]``, so a project
can plug in DRF tokens or JWTs. The default accepts tokens from :func:`make_token`: signed
with ``SECRET_KEY``, expiring after ``TOKEN_MAX_AGE`` seconds, and void once the user's
password changes (the token carries a piece of the session auth hash) or the user is
deactivated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core import signing
from django.utils.module_loading import import_string

from gqlsync.conf import get_settings

_SALT = "gqlsync.auth.token"

User = AbstractBaseUser | AnonymousUser


def make_token(user: AbstractBaseUser) -> str:
    """A signed, expiring bearer token for ``user``."""
    return signing.dumps({"u": str(user.pk), "h": user.get_session_auth_hash()[:16]}, salt=_SALT)


def authenticate_signed_token(token: str) -> AbstractBaseUser | None:
    """The user of a :func:`make_token` token, or ``None`` if forged, expired or void."""
    try:
        data = signing.loads(token, salt=_SALT, max_age=get_settings()["TOKEN_MAX_AGE"])
    except signing.BadSignature:
        return None
    model = get_user_model()
    user = model._default_manager.filter(pk=data.get("u")).first()
    if user is None or not getattr(user, "is_active", True):
        return None
    if user.get_session_auth_hash()[:16] != data.get("h"):
        return None
    return user


def _no_tokens(token: str) -> None:
    return None


def get_authenticator() -> Callable[[str], AbstractBaseUser | None]:
    path = get_settings()["TOKEN_AUTHENTICATOR"]
    if path is None:
        return _no_tokens
    authenticator: Callable[[str], AbstractBaseUser | None] = import_string(path)
    return authenticator


class InvalidToken(Exception):
    """A token was presented and rejected (as opposed to no token at all)."""


def bearer(value: Any) -> str | None:
    """The token of an ``Authorization`` value (``"Bearer <token>"``), or ``None`` when
    there is none or it is malformed (:func:`bearer_credential`, leniently)."""
    try:
        return bearer_credential(value)
    except InvalidToken:
        return None


def bearer_credential(value: Any) -> str | None:
    """The token of an ``Authorization`` header, strictly: ``None`` when there is no
    bearer credential at all (no header, or another scheme, e.g. a proxy's ``Basic``),
    :class:`InvalidToken` when the header is in the bearer scheme without one well-formed
    token (``"Bearer"``, ``"Bearer "``, ``"Bearer a b"``). HTTP answers that ``401`` and
    the WebSocket ``4403``, as for a token that does not authenticate."""
    if not isinstance(value, str):
        return None
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = rest.strip()
    if not token or any(c.isspace() for c in token):
        raise InvalidToken("malformed bearer credential")
    return token


def user_for_token(token: str) -> AbstractBaseUser:
    """Authenticate a token (sync; call through ``sync_to_async``); raises :class:`InvalidToken`."""
    user = get_authenticator()(token)
    if user is None:
        raise InvalidToken("invalid or expired token")
    return user


def get_user(info: Any) -> User:
    """The user of a resolver's request (``info``), set by gqlsync's transports."""
    context = info.context
    user = context.get("user") if isinstance(context, dict) else getattr(context, "user", None)
    return user if user is not None else AnonymousUser()

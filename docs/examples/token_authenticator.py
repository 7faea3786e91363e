# myproject/auth.py, named in settings:
#     GQLSYNC = {"TOKEN_AUTHENTICATOR": "myproject.auth.authenticate"}
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser

from gqlsync.auth import authenticate_signed_token


def authenticate(token: str) -> AbstractBaseUser | None:
    """Service accounts by static token, everyone else by gqlsync's signed tokens.

    Return the user, or ``None`` to reject the token (HTTP 401; on a WebSocket the
    connection is closed with 4403).
    """
    for username, expected in getattr(settings, "SERVICE_TOKENS", {}).items():
        if secrets.compare_digest(token, expected):
            return get_user_model()._default_manager.filter(
                username=username, is_active=True
            ).first()
    return authenticate_signed_token(token)

"""Tokens: signed, expiring, void after a password change or deactivation."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from gqlsync import auth
from gqlsync.auth import authenticate_signed_token, bearer, make_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice() -> Any:
    user = get_user_model().objects.create(username="alice")
    user.set_password("alice-pass")
    user.save()
    return user


def test_a_token_names_its_user(alice: Any) -> None:
    assert authenticate_signed_token(make_token(alice)) == alice


def test_a_tampered_token_is_refused(alice: Any) -> None:
    token = make_token(alice)
    flipped = "A" if token[-2] != "A" else "B"
    assert authenticate_signed_token(token[:-2] + flipped + token[-1]) is None
    assert authenticate_signed_token("garbage") is None


def test_an_expired_token_is_refused(alice: Any, settings: Any) -> None:
    token = make_token(alice)
    settings.GQLSYNC = {"TOKEN_MAX_AGE": -1}
    assert authenticate_signed_token(token) is None


def test_a_password_change_voids_old_tokens(alice: Any) -> None:
    token = make_token(alice)
    alice.set_password("new-pass")
    alice.save()
    assert authenticate_signed_token(token) is None
    assert authenticate_signed_token(make_token(alice)) == alice


def test_a_deactivated_user_is_refused(alice: Any) -> None:
    token = make_token(alice)
    alice.is_active = False
    alice.save()
    assert authenticate_signed_token(token) is None


def test_the_authenticator_is_pluggable(alice: Any, settings: Any) -> None:
    settings.GQLSYNC = {"TOKEN_AUTHENTICATOR": "tests.test_auth.static_tokens"}
    assert auth.user_for_token("alice-static") == alice
    with pytest.raises(auth.InvalidToken):
        auth.user_for_token(make_token(alice))


def static_tokens(token: str) -> Any:
    """A stand-in for a DRF token table: ``<username>-static``."""
    username = token.removesuffix("-static")
    return get_user_model().objects.filter(username=username).first() if token != username else None


def test_tokens_can_be_turned_off(alice: Any, settings: Any) -> None:
    settings.GQLSYNC = {"TOKEN_AUTHENTICATOR": None}
    with pytest.raises(auth.InvalidToken):
        auth.user_for_token(make_token(alice))


@pytest.mark.parametrize(
    ("value", "token"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer", None),
     (None, None), (5, None)],
)
def test_bearer_values_are_parsed_strictly(value: object, token: str | None) -> None:
    assert bearer(value) == token

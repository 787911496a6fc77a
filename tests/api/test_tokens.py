"""``VerifiedTokens``: a verified token answers its caller until its expiry, never after;
a token that does not verify is never remembered."""

from __future__ import annotations

import time
from datetime import timedelta

import jwt
import pytest

from lookout.api import tokens as tokens_module
from lookout.api.tokens import VerifiedTokens
from lookout.orgs.security import Principal, issue_token

KEY = "k" * 43
CALLER = Principal(client_id="c-1", org_id="hackney-cs", org_kind="children_services")


def test_a_valid_token_is_verified_once_and_then_answered_from_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = VerifiedTokens(KEY)
    token = issue_token(CALLER, KEY, timedelta(minutes=5))
    assert cache.read(token) == CALLER
    verified: list[str] = []
    monkeypatch.setattr(tokens_module, "read_token", lambda t, k: verified.append(t))
    assert cache.read(token) == CALLER
    assert verified == []


def test_a_remembered_token_is_refused_from_its_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = VerifiedTokens(KEY)
    token = issue_token(CALLER, KEY, timedelta(minutes=5))
    assert cache.read(token) == CALLER
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    monkeypatch.setattr(time, "time", lambda: exp - 0.001)
    assert cache.read(token) == CALLER
    monkeypatch.setattr(time, "time", lambda: float(exp))  # PyJWT: exp <= now
    assert cache.read(token) is None
    assert len(cache) == 0


@pytest.mark.parametrize(
    "token",
    [
        issue_token(CALLER, "another key" * 4, timedelta(minutes=5)),
        issue_token(CALLER, KEY, timedelta(seconds=-1)),
        issue_token(CALLER, KEY, timedelta(minutes=5))[:-2] + "xx",
        "not a token",
    ],
    ids=["other key", "expired", "bad signature", "garbage"],
)
def test_a_token_that_does_not_verify_is_refused_and_not_remembered(token: str) -> None:
    cache = VerifiedTokens(KEY)
    assert cache.read(token) is None
    assert cache.read(token) is None
    assert len(cache) == 0


def test_the_cache_is_bounded_and_drops_the_least_recently_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = VerifiedTokens(KEY, max_tokens=2)
    first, second, third = (
        issue_token(Principal(f"c-{n}", "hackney-cs", "children_services"), KEY, timedelta(hours=1))
        for n in range(3)
    )
    cache.read(first)
    cache.read(second)
    cache.read(first)  # now the most recent
    cache.read(third)
    assert len(cache) == 2
    verified: list[str] = []
    monkeypatch.setattr(tokens_module, "read_token", lambda t, k: verified.append(t))
    cache.read(first)
    cache.read(third)
    assert verified == []
    cache.read(second)
    assert verified == [second]

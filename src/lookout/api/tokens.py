"""Verified access tokens, remembered until they expire.

A client sends the same bearer token on every request for the token's lifetime (an hour
by default). Verifying it (``orgs.security.read_token``: base64 and JSON decoding, the
HMAC, the claims) took about 5% of the API's CPU on a page of ``GET /v1/alerts``. A token
is immutable and its signature either holds or not, so once verified with this API's key
the same string names the same caller until its ``exp``: this cache answers that caller
until then and never after (the same ``exp <= now`` test PyJWT applies). Only tokens that
verified are kept: a rejected one is checked afresh every time, as before. One cache per
app (per process and key), bounded; the least recently used token goes first.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import jwt

from lookout.orgs.security import Principal, read_token


class VerifiedTokens:
    def __init__(self, key: str, max_tokens: int = 10_000) -> None:
        self._key = key
        self._max = max_tokens
        self._tokens: OrderedDict[str, tuple[Principal, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tokens)

    def read(self, token: str) -> Principal | None:
        """The caller the token names, or None if it is invalid or has expired."""
        known = self._tokens.get(token)
        if known is not None:
            principal, expires = known
            if time.time() < expires:
                self._tokens.move_to_end(token)
                return principal
            del self._tokens[token]
            return None
        verified = read_token(token, self._key)
        if verified is None:
            return None
        # Verified just now (signature and claims, ``exp`` required): read its expiry.
        claims = jwt.decode(token, options={"verify_signature": False})
        self._tokens[token] = (verified, int(claims["exp"]))
        if len(self._tokens) > self._max:
            self._tokens.popitem(last=False)
        return verified

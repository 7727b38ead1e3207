"""Bearer tokens: HS256 JWTs whose `sub` is the user."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import jwt

ALGORITHMS = ("HS256",)
MAX_USER_LENGTH = 128


class InvalidToken(Exception):
    """The token is missing, malformed, expired or signed with another key."""


def issue_token(secret: str, user: str, ttl: int = 86400) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + ttl}, secret, algorithm="HS256")


@dataclass(frozen=True)
class TokenVerifier:
    """Accepts tokens signed with any of `secrets` (so keys can rotate)."""

    secrets: Sequence[str]
    leeway: float = 30.0

    def user_of(self, token: str) -> str:
        for secret in self.secrets:
            try:
                claims = jwt.decode(
                    token,
                    secret,
                    algorithms=list(ALGORITHMS),
                    leeway=self.leeway,
                    options={"require": ["exp", "sub"]},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                raise InvalidToken(str(exc)) from None
            return _user(claims.get("sub"))
        raise InvalidToken("signature verification failed")


def _user(sub: object) -> str:
    if not isinstance(sub, str) or not sub or len(sub) > MAX_USER_LENGTH:
        raise InvalidToken("sub must be a non-empty string")
    if any(c in sub for c in ":{} \t\r\n"):
        raise InvalidToken("sub holds a character user names may not contain")
    return sub

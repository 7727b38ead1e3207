"""Bearer tokens: JWTs whose `sub` is the user.

HS256 with shared secrets by default (several at once, so keys can rotate);
RS256/ES256 with the identity provider's public key when configured. `exp` is
required; `aud` and `iss` are checked when configured; a little clock skew is
allowed. `alg: none` and algorithm confusion are refused: each key is only ever
tried with the algorithms of its own kind.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt

from oppscan.settings import Settings

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
PUBLIC_KEY_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})
MAX_USER_LENGTH = 128


class InvalidToken(Exception):
    """The token is malformed, signed with no key of ours, or its claims are refused;
    the message says which, in words a client may be shown."""


class TokenExpired(InvalidToken):
    """The token was good, but its `exp` (plus the allowed skew) has passed."""


def issue_token(
    secret: str,
    user: str,
    ttl: int = 86400,
    audience: str | None = None,
    issuer: str | None = None,
) -> str:
    """An HS256 token for `user`, valid `ttl` seconds."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user, "iat": now, "exp": now + ttl}
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")


def settings_token(
    settings: Settings, user: str, ttl: int = 86400, secret: str | None = None
) -> str:
    """A token this deployment accepts: signed with its signing secret (or `secret`),
    with its configured audience and issuer."""
    signing = secret or settings.resolved_secret()
    return issue_token(signing, user, ttl, settings.jwt_audience, settings.jwt_issuer)


@dataclass(frozen=True)
class VerificationKey:
    key: str
    algorithms: tuple[str, ...]


@dataclass(frozen=True)
class TokenVerifier:
    """Accepts a token signed by any of `keys`, each with its own algorithms.

    A verified token is remembered (the last 10 000, per worker) and trusted
    until its `exp`, so a client polling with the same token pays the signature
    check once. A token that fails is checked again each time it is sent.
    """

    keys: Sequence[VerificationKey]
    audience: str | None = None
    issuer: str | None = None
    leeway: float = 30.0
    _remembered: Callable[[str], tuple[str, float]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_remembered", functools.lru_cache(maxsize=10_000)(self._verify))

    @classmethod
    def hmac(cls, secrets: Sequence[str], **options: Any) -> TokenVerifier:
        return cls([VerificationKey(s, ("HS256",)) for s in secrets], **options)

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        wanted = settings.jwt_algorithms
        keys: list[VerificationKey] = []
        hmac = tuple(a for a in wanted if a in HMAC_ALGORITHMS)
        if hmac:
            keys += [
                VerificationKey(s, hmac) for s in settings.secrets() or [settings.resolved_secret()]
            ]
        public = tuple(a for a in wanted if a in PUBLIC_KEY_ALGORITHMS)
        if public and settings.jwt_public_key:
            keys.append(VerificationKey(settings.jwt_public_key, public))
        return cls(keys, settings.jwt_audience, settings.jwt_issuer)

    def user_of(self, token: str) -> str:
        user, expires = self._remembered(token)
        if expires + self.leeway <= time.time():
            raise TokenExpired("token expired")
        return user

    def _verify(self, token: str) -> tuple[str, float]:
        for candidate in self.keys:
            try:
                claims = jwt.decode(
                    token,
                    candidate.key,
                    algorithms=list(candidate.algorithms),
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=self.leeway,
                    options={"require": ["exp", "sub"]},
                )
            except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
                continue  # maybe another key (rotation), or a key of another kind
            except jwt.ExpiredSignatureError:
                raise TokenExpired("token expired") from None
            except jwt.PyJWTError as exc:
                raise InvalidToken(str(exc) or type(exc).__name__) from None
            return _user(claims.get("sub")), float(claims["exp"])
        raise InvalidToken("no key verifies the signature")


def _user(sub: object) -> str:
    if not isinstance(sub, str) or not sub or len(sub) > MAX_USER_LENGTH:
        raise InvalidToken("sub must be a non-empty string")
    if any(c in sub for c in ":{} \t\r\n") or not sub.isprintable():
        raise InvalidToken("sub holds a character user names may not contain")
    return sub

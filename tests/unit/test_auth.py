"""Token verification: every way a token can be wrong is a refusal."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from oppscan.auth import InvalidToken, TokenExpired, TokenVerifier, VerificationKey, issue_token
from oppscan.settings import Settings

SECRET = "a-secret-of-at-least-thirty-two-bytes!"
OTHER = "another-secret-of-thirty-two-bytes!!"


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims(**extra: object) -> dict[str, object]:
    return {"sub": "alice", "exp": int(time.time()) + 60, **extra}


def test_valid_token_names_its_user() -> None:
    """A token signed with the secret yields its `sub`."""
    assert "alice" == TokenVerifier.hmac([SECRET]).user_of(issue_token(SECRET, "alice"))


def test_rotated_secrets_are_all_accepted() -> None:
    """During a rotation tokens signed with the old or the new secret pass."""
    verifier = TokenVerifier.hmac([OTHER, SECRET])
    assert "alice" == verifier.user_of(issue_token(SECRET, "alice"))
    assert "bob" == verifier.user_of(issue_token(OTHER, "bob"))


def test_expired_token_is_refused() -> None:
    """A token past its `exp` (beyond the allowed skew) is refused."""
    token = jwt.encode(claims(exp=int(time.time()) - 120), SECRET, algorithm="HS256")
    with pytest.raises(TokenExpired, match="token expired"):
        TokenVerifier.hmac([SECRET]).user_of(token)


def test_a_remembered_token_is_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    """The signature is checked once per token; its `exp` on every request."""
    decoded: list[str] = []
    real_decode = jwt.decode

    def counting_decode(token: str, *args: object, **kwargs: object) -> object:
        decoded.append(token)
        return real_decode(token, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jwt, "decode", counting_decode)
    verifier = TokenVerifier.hmac([SECRET], leeway=0)
    token = issue_token(SECRET, "alice", ttl=60)
    assert ["alice"] * 3 == [verifier.user_of(token) for _ in range(3)]
    assert 1 == len(decoded)
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(TokenExpired, match="token expired"):
        verifier.user_of(token)


def test_a_refusal_other_than_expiry_says_what_is_wrong() -> None:
    """Only an expired token is TokenExpired; any other refusal is an InvalidToken whose
    message says what is wrong with it."""
    verifier = TokenVerifier.hmac([SECRET])
    refusals = []
    for token in (
        "nonsense",
        issue_token(OTHER, "alice"),
        jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"),
    ):
        with pytest.raises(InvalidToken) as raised:
            verifier.user_of(token)
        refusals.append(raised.value)
    assert [False] * 3 == [isinstance(r, TokenExpired) for r in refusals]
    assert (True, "no key verifies the signature", True) == (
        "segments" in str(refusals[0]),
        str(refusals[1]),
        '"exp"' in str(refusals[2]),
    )


def test_small_clock_skew_is_allowed() -> None:
    """A token that expired a few seconds ago still passes (clock skew)."""
    token = jwt.encode(claims(exp=int(time.time()) - 5), SECRET, algorithm="HS256")
    assert "alice" == TokenVerifier.hmac([SECRET]).user_of(token)


def test_token_without_exp_is_refused() -> None:
    """`exp` is required."""
    token = jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        TokenVerifier.hmac([SECRET]).user_of(token)


def test_tampered_token_is_refused() -> None:
    """Changing the payload breaks the signature."""
    header, _, signature = issue_token(SECRET, "alice").split(".")
    forged = base64.urlsafe_b64encode(json.dumps(claims(sub="root")).encode()).rstrip(b"=")
    with pytest.raises(InvalidToken):
        TokenVerifier.hmac([SECRET]).user_of(f"{header}.{forged.decode()}.{signature}")


def test_alg_none_is_refused() -> None:
    """An unsigned token is refused."""
    token = jwt.encode(claims(), None, algorithm="none")
    with pytest.raises(InvalidToken):
        TokenVerifier.hmac([SECRET]).user_of(token)


def test_wrong_key_is_refused() -> None:
    """A token signed with a secret we do not hold is refused."""
    with pytest.raises(InvalidToken):
        TokenVerifier.hmac([SECRET]).user_of(issue_token(OTHER, "alice"))


def test_wrong_audience_and_issuer_are_refused() -> None:
    """With `aud`/`iss` configured, other or missing values are refused."""
    verifier = TokenVerifier.hmac([SECRET], audience="oppscan", issuer="idp")
    good = issue_token(SECRET, "alice", audience="oppscan", issuer="idp")
    assert "alice" == verifier.user_of(good)
    for bad in (
        issue_token(SECRET, "alice", audience="other", issuer="idp"),
        issue_token(SECRET, "alice", audience="oppscan", issuer="evil"),
        issue_token(SECRET, "alice"),
    ):
        with pytest.raises(InvalidToken):
            verifier.user_of(bad)


@pytest.mark.parametrize("kind", ["RS256", "ES256"])
def test_public_key_tokens_are_verified(kind: str) -> None:
    """An identity provider's RS256/ES256 token verifies with its public key."""
    private = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    public = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings = Settings(jwt_algorithms=("HS256", kind), jwt_public_key=public, secret=SECRET)
    verifier = TokenVerifier.from_settings(settings)
    assert "carol" == verifier.user_of(jwt.encode(claims(sub="carol"), private, algorithm=kind))
    assert "alice" == verifier.user_of(issue_token(SECRET, "alice"))


def test_public_key_is_never_used_as_an_hmac_secret() -> None:
    """Algorithm confusion: an HS256 token signed with the public key text is refused."""
    private = ec.generate_private_key(ec.SECP256R1())
    public = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    verifier = TokenVerifier([VerificationKey(public, ("ES256",))])
    signing_input = f"{b64(dict(alg='HS256', typ='JWT'))}.{b64(claims())}"
    mac = hmac.new(public.encode(), signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(InvalidToken):
        verifier.user_of(forged)


@pytest.mark.parametrize("sub", ["", "a:b", "x" * 200, "tab\tbed", 42])
def test_unusable_subjects_are_refused(sub: object) -> None:
    """A `sub` that is not a plain user name is refused."""
    token = jwt.encode(claims(sub=sub), SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        TokenVerifier.hmac([SECRET]).user_of(token)

"""DPoP proofs (RFC 9449): checking a proof a client sent with a request, and creating one with an agent's key.

A proof is a JWT the client signs per request with a key it holds: header ``typ: dpop+jwt``, an asymmetric
``alg`` and the public ``jwk``; claims ``jti`` (unique), ``htm`` and ``htu`` (the request's method and URI,
without query and fragment), ``iat``, and - when it accompanies an access token - ``ath``, the token's SHA-256;
``nonce`` when the server asked for one (section 8). ``check_proof`` runs the checks of section 4.3 in its
order and returns the proof key's RFC 7638 thumbprint: a token endpoint writes it into the token as
``cnf.jkt`` (section 6.1), a resource server compares it with the token's.

Accepted algorithms: EdDSA / Ed25519 (the agents' own did:key) and ES256 (RFC 9449's example, the key type of
WebCrypto and platform authenticators). Everything else - ``none``, HMAC, RSA - is refused before any key is
touched. Errors are ``VerificationError`` with the codes below; ``INVALID_DPOP_PROOF`` and ``USE_DPOP_NONCE``
are the error codes section 5 and section 8 give the token endpoint, ``invalid_token`` / ``use_dpop_nonce``
what a resource server answers in ``WWW-Authenticate: DPoP`` (section 7.1).
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Protocol
from urllib.parse import urlsplit, urlunsplit

import orjson

from agentauth.did import DidKeyError, decode_did_key
from agentauth.keys import KeyError_, KeyPair, PublicKey, b64url_decode, b64url_encode
from agentauth.keys.jwk import JwkError
from agentauth.keys.p256 import P256PublicKey
from agentauth.vc.dpop_nonces import NonceSource
from agentauth.vc.errors import VerificationError

INVALID_DPOP_PROOF: Final = "invalid_dpop_proof"
USE_DPOP_NONCE: Final = "use_dpop_nonce"

PROOF_TYPE: Final = "dpop+jwt"
# alg -> the JWK key type it takes. RFC 8725 section 3.1: the verifier picks the algorithms, not the token.
ALGORITHMS: Final[Mapping[str, tuple[str, str]]] = {
    "EdDSA": ("OKP", "Ed25519"),
    "Ed25519": ("OKP", "Ed25519"),
    "ES256": ("EC", "P-256"),
}
SIGNING_ALGORITHMS: Final = tuple(ALGORITHMS)  # RFC 8414 ``dpop_signing_alg_values_supported``
# Members of a private or symmetric JWK (RFC 7518 section 6.2.2, 6.3.2, 6.4; RFC 8037 section 2).
PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
MAX_PROOF_LENGTH: Final = 8 * 1024
# Section 11.1: proofs are accepted for a short window around their iat; a replay cache covers the window.
IAT_WINDOW_SECONDS: Final = 60.0
IAT_LEEWAY_SECONDS: Final = 5.0
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class ReplayCache(Protocol):
    """Where used proof ``jti``s are remembered until their proof could no longer be accepted anyway; False
    when ``jti`` was seen. ``vc.nonces.NonceRegistry`` is one (per process); replicas share another."""

    def consume(self, nonce: str, *, until: float, now: float) -> bool: ...


@dataclass(frozen=True, slots=True)
class Proof:
    """A proof that passed: its key's RFC 7638 thumbprint (``cnf.jkt``), its public JWK and its claims."""

    jkt: str
    jwk: dict[str, Any]
    claims: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DPoPRequest:
    """What a resource server hands the verifier with a token sent as ``Authorization: DPoP <token>``: the
    ``DPoP`` header's proof, the request's method and URI, its replay cache and, if it requires nonces, where
    they come from (``dpop_nonces.DPoPNonces``; a proof without an accepted one is ``USE_DPOP_NONCE``)."""

    proof: str
    method: str
    uri: str
    replay: ReplayCache
    nonces: NonceSource | None = None


def _refused(detail: str) -> VerificationError:
    return VerificationError(INVALID_DPOP_PROOF, detail)


def normalized_uri(uri: str) -> str:
    """The form ``htu`` is compared in (section 4.3 point 9; RFC 3986 section 6.2.2-6.2.3): scheme and host in
    lower case, the scheme's default port and any query and fragment left out, an empty path as ``/``."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise _refused("htu is not a URI") from exc
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not scheme or not host:
        raise _refused("htu must be an absolute URI")
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", "", ""))


def access_token_hash(access_token: str) -> str:
    """``ath`` (section 4.2): base64url of the SHA-256 of the access token's ASCII bytes."""
    return b64url_encode(hashlib.sha256(access_token.encode("ascii")).digest())


def _decode(segment: str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(b64url_decode(segment, canonical=False))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise _refused(f"{what} is not base64url JSON") from exc
    if not isinstance(value, dict):
        raise _refused(f"{what} is not a JSON object")
    return value


def _public_key(alg: str, jwk: Any) -> _Key:
    if not isinstance(jwk, dict):
        raise _refused("the header carries no jwk object")
    if PRIVATE_MEMBERS & set(jwk):
        raise _refused("the jwk header must be a public key, it holds private or symmetric key members")
    kty, crv = ALGORITHMS[alg]
    if jwk.get("kty") != kty or jwk.get("crv") != crv:
        raise _refused(f"alg {alg} needs a {kty} {crv} key")
    x, y = jwk.get("x"), jwk.get("y")
    if not isinstance(x, str) or not (y is None or isinstance(y, str)):
        raise _refused("jwk: the key's coordinates must be strings")
    try:
        return _parsed_key(kty, crv, x, y)
    except JwkError as exc:
        raise _refused(f"jwk: {exc}") from exc


@lru_cache(maxsize=4096)
def _parsed_key(kty: str, crv: str, x: str, y: str | None) -> _Key:
    """A client signs its proofs with one key: parsed (and its thumbprint computed) once per key, not per
    proof. A key that fails to parse raises, which is not cached."""
    jwk = {"kty": kty, "crv": crv, "x": x} | ({} if y is None else {"y": y})
    key = PublicKey.from_jwk(jwk) if kty == "OKP" else P256PublicKey.from_jwk(jwk)
    return _Key(key, key.thumbprint(), key.jwk())


@dataclass(frozen=True, slots=True)
class _Key:
    key: PublicKey | P256PublicKey
    jkt: str
    jwk: dict[str, str]


def check_proof(
    proof: str,
    *,
    method: str,
    uri: str,
    replay: ReplayCache,
    access_token: str | None = None,
    nonces: NonceSource | None = None,
    now: float | None = None,
    window: float = IAT_WINDOW_SECONDS,
    leeway: float = IAT_LEEWAY_SECONDS,
) -> Proof:
    """Check ``proof`` for a request ``method uri`` (section 4.3): well-formed, ``typ``, ``alg`` allowed, the
    signature by its own public ``jwk``, ``htm``/``htu`` of this request, ``iat`` within ``window`` seconds
    before ``now`` (``leeway`` after), ``ath`` of ``access_token`` when one accompanies it, a ``nonce`` that
    ``nonces`` accepts when the server requires them, and its ``jti`` not used before (recorded in ``replay``,
    last, so a refused proof uses up nothing). Raises ``VerificationError`` (``INVALID_DPOP_PROOF``, or
    ``USE_DPOP_NONCE`` when the nonce is missing or not the current one)."""
    at = time.time() if now is None else now
    if not isinstance(proof, str) or len(proof) > MAX_PROOF_LENGTH:
        raise _refused("the proof is not a string of acceptable length")
    segments = proof.split(".")
    if len(segments) != 3:
        raise _refused(f"a proof is a compact JWS of 3 segments, got {len(segments)}")
    header, claims = _decode(segments[0], "header"), _decode(segments[1], "payload")
    if header.get("typ") != PROOF_TYPE:
        raise _refused(f"typ must be {PROOF_TYPE}")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise _refused(f"alg {alg!r} is not accepted ({', '.join(SIGNING_ALGORITHMS)})")
    if "crit" in header:
        raise _refused("no crit header parameter is understood")
    key = _public_key(alg, header.get("jwk"))
    try:
        signature = b64url_decode(segments[2])
    except ValueError as exc:
        raise _refused("the signature is not base64url") from exc
    if not key.key.verify(signature, f"{segments[0]}.{segments[1]}".encode("ascii")):
        raise _refused("the signature does not verify with the header's jwk")
    jti, htm, htu, iat = claims.get("jti"), claims.get("htm"), claims.get("htu"), claims.get("iat")
    if not isinstance(jti, str) or not jti or len(jti) > 256:
        raise _refused("jti must be a non-empty string")
    if htm != method:
        raise _refused(f"htm {htm!r} is not the request's method")
    if not isinstance(htu, str):
        raise _refused("htu is missing")
    split = urlsplit(htu)
    if split.query or split.fragment or "?" in htu or "#" in htu:
        raise _refused("htu must not carry a query or fragment")
    target = normalized_uri(uri)
    if normalized_uri(htu) != target:
        raise _refused("htu is not the request's URI")
    if isinstance(iat, bool) or not isinstance(iat, (int, float)):
        raise _refused("iat must be a number")
    if iat > at + leeway or iat < at - window:
        raise _refused("iat is outside the accepted window")
    if access_token is not None:
        ath = claims.get("ath")
        # Constant time: a timing difference would tell an attacker how much of a token's hash it guessed.
        if not isinstance(ath, str) or not hmac.compare_digest(ath.encode(), access_token_hash(access_token).encode()):
            raise _refused("ath is not the hash of the access token")
    if nonces is not None and not nonces.accepts(claims.get("nonce"), at):
        raise VerificationError(USE_DPOP_NONCE, "the proof must carry the server's current nonce")
    # Section 11.1: each jti once per target URI within the window.
    if not replay.consume(f"{target}\n{jti}", until=at + window + leeway, now=at):
        raise _refused("the proof was used before (jti replayed)")
    return Proof(key.jkt, dict(key.jwk), claims)


@lru_cache(maxsize=4096)
def did_key_thumbprint(did: str) -> str | None:
    """The RFC 7638 thumbprint of the Ed25519 key a did:key names - the ``cnf.jkt`` of a token bound to that
    key -, or None when ``did`` is no Ed25519 did:key."""
    try:
        return PublicKey.from_bytes(decode_did_key(did)).thumbprint()
    except (DidKeyError, KeyError_):
        return None


def create_proof(
    key: KeyPair,
    method: str,
    uri: str,
    *,
    access_token: str | None = None,
    nonce: str | None = None,
    now: float | None = None,
) -> str:
    """A proof signed with ``key`` (an agent's did:key) for a request ``method uri``: what an agent sends in the
    ``DPoP`` header (section 4.1). ``uri`` is cut to its ``htu`` form (no query, no fragment)."""
    header = {"typ": PROOF_TYPE, "alg": "EdDSA", "jwk": key.public.jwk()}
    parts = urlsplit(uri)
    claims: dict[str, Any] = {
        "jti": str(uuid.uuid4()),
        "htm": method,
        "htu": urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", "")),
        "iat": int(time.time() if now is None else now),
    }
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    if nonce is not None:
        claims["nonce"] = nonce
    signing_input = f"{b64url_encode(orjson.dumps(header))}.{b64url_encode(orjson.dumps(claims))}"
    return f"{signing_input}.{b64url_encode(key.sign(signing_input.encode('ascii')))}"

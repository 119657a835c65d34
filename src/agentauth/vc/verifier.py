"""Offline verification of AgentAuth tokens, credentials, presentations and delegation chains.

Trust anchor: the issuer's JWKS (RFC 7517) or its DID document. Checks, in order: structure and the
algorithm allow-list (RFC 8725 section 3.1), ``typ`` (RFC 9068 section 4 for access tokens), key by ``kid``,
signature, ``iss``, time claims with leeway, credential type, ``aud`` when expected, status bit (Bitstring
Status List v1.0 section 3.2), and for delegated tokens the chain rules in ``chain.py``.

Hot path. A depth-3 delegated token runs these checks four times, and on a slower interpreter every builtin call
costs more than the check it makes. So claims are read by indexing (a missing one raises ``KeyError``, caught)
rather than ``dict.get``, and types are tested with ``type(x) is T`` (no call) before the exact ``isinstance``
test, which stays for anything else: what orjson returns is exactly ``dict``, ``list``, ``str``, ``int``. The
check and its error are the same either way.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agentauth.did import url_to_did_web
from agentauth.keys import PublicKey
from agentauth.vc import errors as e
from agentauth.vc.anchors import keys_from_did_document, keys_from_jwks
from agentauth.vc.chain import DelegationLink, check_chain, check_token_against_chain
from agentauth.vc.claims import NUMERIC_DATE, number, stale_detail, vc_types
from agentauth.vc.credentials import (
    ACCESS_CREDENTIAL,
    DELEGATION_CREDENTIAL,
    IDENTITY_CREDENTIAL,
    STATUS_LIST_CREDENTIAL,
    TYP_ACCESS_TOKEN,
    TYP_JWT,
    VERIFIABLE_PRESENTATION,
)
from agentauth.vc.dpop import DPoPRequest, check_proof, did_key_thumbprint
from agentauth.vc.errors import VerificationError
from agentauth.vc.jws import decode_compact, parse_compact
from agentauth.vc.nonces import NonceRegistry
from agentauth.vc.presentation import holder_public_key
from agentauth.vc.status import (
    DEFAULT_MAX_STATUS_STALENESS_SECONDS,
    CachedList,
    StatusCache,
    StatusListSource,
    status_list_usable_until,
    status_ttl_seconds,
)
from agentauth.vc.status_list import StatusList, StatusListError

log = logging.getLogger("agentauth.verifier")

DEFAULT_LEEWAY_SECONDS = 30
# credentialStatus entries one credential may carry (one per purpose is the use; more is refused, not fetched).
MAX_STATUS_ENTRIES = 4


def _consented_actor(claims: Mapping[str, Any]) -> bool:
    """A token of the authorization code grant: an owner (``sub``, the credential subject's ``ownerId``) consented
    that a client act as one of their agents (``act``, the subject's ``actingAgent``). The issuer attests that
    consent by signing; there is no delegation credential to check. Anything else with ``act`` needs its chain."""
    subject = claims.get("vc", {}).get("credentialSubject") if isinstance(claims.get("vc"), dict) else None
    act = claims.get("act")
    return (
        isinstance(subject, dict)
        and isinstance(act, dict)
        and set(act) == {"sub"}
        and subject.get("ownerId") == claims.get("sub")
        and isinstance(subject.get("actingAgent"), str)
        and act["sub"] == subject["actingAgent"]
    )


def check_binding(
    token: str, claims: Mapping[str, Any], dpop: DPoPRequest | None, ts: float, proven_jkt: str | None = None
) -> None:
    """RFC 9449 section 7.1: a bound token (``cnf.jkt``) with a proof by its key, an unbound one without any.
    ``proven_jkt``: instead of ``dpop``, the thumbprint of a key the caller already checked a proof of (a token
    endpoint given this token as a parameter, with the request's own proof): a bound token must be bound to it,
    an unbound one passes. For a verified token's claims (the
    verifier checks it with the signature; a cache of verified tokens checks it on each use)."""
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if cnf is not None and not isinstance(jkt, str):
        raise VerificationError(e.MALFORMED, "cnf must be an object carrying jkt")
    if dpop is None and proven_jkt is None:
        if jkt is None:
            return
        raise VerificationError(e.DPOP_REQUIRED, "the token is DPoP-bound: it needs a proof, not the Bearer scheme")
    if jkt is None:
        if dpop is None:
            return  # ``proven_jkt`` alone: the holder's key counts only for a token bound to one
        raise VerificationError(e.NOT_DPOP_BOUND, "a DPoP proof came with a token that is not DPoP-bound")
    if dpop is not None:
        proven_jkt = check_proof(
            dpop.proof, method=dpop.method, uri=dpop.uri, replay=dpop.replay, access_token=token,
            nonces=dpop.nonces, now=ts,
        ).jkt  # fmt: skip
    assert proven_jkt is not None
    if not hmac.compare_digest(proven_jkt.encode(), jkt.encode()):
        raise VerificationError(e.DPOP_KEY_MISMATCH, "the proof is signed by another key than the token is bound to")


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A verified access token: its claims, and the verified delegation chain it rests on (root first)."""

    claims: dict[str, Any]
    kid: str
    chain: tuple[DelegationLink, ...] = ()

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(str(self.claims.get("scope", "")).split())

    @property
    def subject(self) -> str:
        return str(self.claims["sub"])

    @property
    def holder(self) -> str:
        """The DID presenting the token: the acting delegate of a delegated token (RFC 8693 ``act.sub``, the
        current actor outermost), else the subject."""
        act = self.claims.get("act")
        return str(act["sub"]) if isinstance(act, dict) and "sub" in act else self.subject

    @property
    def bound_to_holder_key(self) -> bool:
        """Whether the token is DPoP-bound (``cnf.jkt``) to the holder's own did:key - what AgentAuth issues to an
        agent with ``bind_to_agent_key``. A verified proof for such a token proves possession of the key of the
        DID it names: identity and possession checked with one key, from the token alone."""
        cnf = self.claims.get("cnf")
        jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
        expected = did_key_thumbprint(self.holder)
        return isinstance(jkt, str) and expected is not None and hmac.compare_digest(jkt, expected)


@dataclass(frozen=True, slots=True)
class VerifiedPresentation:
    holder: str
    claims: dict[str, Any]
    credentials: tuple[dict[str, Any], ...] = field(default_factory=tuple)


class Verifier:
    """Verifies what an AgentAuth issuer signs, with nothing but its public keys and its status lists.

    ``jwks`` or ``did_document`` is the trust anchor. ``status_source`` supplies status list credentials; when a
    credential carries a status entry and no source can answer, verification fails (``status_unavailable``)
    unless ``check_status=False`` was chosen explicitly. ``refresh_keys`` is called with an unknown ``kid`` and
    may return a fresh JWKS (the online SDK rate-limits it); ``clock`` supplies "now" when a call gives none.

    ``max_status_staleness`` (seconds, default 60): a status list is refused (``status_stale``) once it is older
    than its own ``ttl`` plus this much, counted from its ``iat`` (see ``agentauth.vc.status``); ``None`` turns
    the check off - only for a source that vouches for freshness itself.

    ``leeway_seconds`` (default 30) tolerates clock skew between the issuer and this verifier on every time claim;
    ``exp_leeway_seconds`` overrides it for ``exp`` alone. A third party keeps the default: its clock is not the
    issuer's. The issuer judging its own tokens sets ``exp_leeway_seconds=0``, so a token it calls expired in
    introspection is expired on every route too.

    ``resource``: the identifier of the resource server verifying (RFC 8707), which an access token's ``aud`` must
    name unless a call passes ``audience``; with ``require_audience`` a call with neither fails
    (``audience_not_configured``) instead of skipping the check.
    """

    def __init__(
        self,
        *,
        issuer_url: str,
        jwks: Mapping[str, Any] | None = None,
        did_document: Mapping[str, Any] | None = None,
        issuer_did: str | None = None,
        status_source: StatusListSource | None = None,
        check_status: bool = True,
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
        exp_leeway_seconds: int | None = None,
        refresh_keys: Callable[[str], Mapping[str, Any] | None] | None = None,
        clock: Callable[[], datetime] | None = None,
        nonces: NonceRegistry | None = None,
        max_status_staleness: float | None = DEFAULT_MAX_STATUS_STALENESS_SECONDS,
        resource: str | None = None,
        require_audience: bool = False,
    ) -> None:
        if (jwks is None) == (did_document is None):
            raise ValueError("give exactly one trust anchor: jwks or did_document")
        self.issuer_url = issuer_url.rstrip("/")
        if did_document is not None:
            self.issuer_did = str(did_document["id"])
            self._keys = keys_from_did_document(did_document)
        else:
            self.issuer_did = issuer_did or url_to_did_web(self.issuer_url)
            self._keys = keys_from_jwks(jwks or {})
        self._status_source = status_source
        self._check_status = check_status
        if max_status_staleness is not None and max_status_staleness < 0:
            raise ValueError("max_status_staleness must be >= 0 seconds (or None)")
        self._max_staleness = max_status_staleness
        self._leeway = leeway_seconds
        self._exp_leeway = leeway_seconds if exp_leeway_seconds is None else exp_leeway_seconds
        self._refresh_keys = refresh_keys
        self._clock = clock or (lambda: datetime.now(UTC))
        self._status_cache = StatusCache()
        self.nonces = nonces or NonceRegistry()
        # RFC 9068 section 4: "The resource server MUST validate that the aud claim contains a resource indicator
        # value corresponding to an identifier the resource server expects for itself." ``resource`` is that
        # identifier, checked when a call names no audience; ``require_audience`` (the SDK's verifiers) refuses
        # to verify an access token with neither.
        self.resource = resource
        self.require_audience = require_audience

    # -- keys -------------------------------------------------------------------------------------------

    def use_jwks(self, jwks: Mapping[str, Any]) -> None:
        """Replace the trusted key set (after a refetch)."""
        self._keys = keys_from_jwks(jwks)

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def _key(self, kid: Any) -> PublicKey:
        if not isinstance(kid, str) or not kid:
            raise VerificationError(e.UNKNOWN_KID, "header has no kid")
        key = self._keys.get(kid)
        if key is None and self._refresh_keys is not None:
            fresh = self._refresh_keys(kid)
            if fresh is not None:
                self.use_jwks(fresh)
                key = self._keys.get(kid)
        if key is None:
            raise VerificationError(e.UNKNOWN_KID, f"kid {kid!r} is not in the trusted key set")
        return key

    # -- shared steps -----------------------------------------------------------------------------------

    def _signed(self, token: str, typ: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(header, claims) of ``token`` once its structure, alg, ``typ``, ``kid`` and signature check out.
        The header is shared (see ``parse_compact``): read only."""
        header, claims, signing_input, signature = decode_compact(token)
        try:
            header_typ, kid = header["typ"], header["kid"]
        except KeyError:
            header_typ, kid = header.get("typ"), header.get("kid")
        if header_typ != typ:
            raise VerificationError(e.INVALID_TYP, f"typ {header_typ!r}, expected {typ!r}")
        try:
            key = self._keys[kid] if type(kid) is str else self._key(kid)
        except KeyError:
            key = self._key(kid)  # the checks and errors for a missing or unknown kid; a key refresh
        if not key.verify(signature, signing_input):
            raise VerificationError(e.INVALID_SIGNATURE, "signature does not verify")
        return header, claims

    def verify_signature(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(header, claims) of anything this issuer signed - any ``typ``, no time or status checks.

        For deciding what a presented token *is* (revocation, introspection) before judging whether it is
        still valid: a forged token must never be able to name someone else's credential.
        """
        jws = parse_compact(token)
        if not jws.verify_with(self._key(jws.header.get("kid"))):
            raise VerificationError(e.INVALID_SIGNATURE, "signature does not verify")
        return dict(jws.header), jws.payload  # a copy: parsed headers are shared (see parse_compact)

    def _times(self, claims: Mapping[str, Any], now: float, exp_required: bool = True) -> None:
        try:
            exp, nbf, iat = claims["exp"], claims["nbf"], claims["iat"]
        except KeyError:
            exp = nbf = iat = None
        # What this issuer signs carries all three as JSON numbers; anything else gets _number's precise errors.
        if not (type(exp) in NUMERIC_DATE and type(nbf) in NUMERIC_DATE and type(iat) in NUMERIC_DATE):
            exp = number(claims, "exp", exp_required)
            nbf = number(claims, "nbf", False)
            iat = number(claims, "iat", False)
        if exp is not None and now - self._exp_leeway >= exp:
            raise VerificationError(e.EXPIRED, f"expired at {exp:.0f}, now {now:.0f}")
        if nbf is not None and now + self._leeway < nbf:
            raise VerificationError(e.NOT_YET_VALID, f"not valid before {nbf:.0f}, now {now:.0f}")
        if iat is not None and now + self._leeway < iat:
            raise VerificationError(e.NOT_YET_VALID, f"issued in the future ({iat:.0f})")

    def _now(self, now: datetime | None) -> datetime:
        return now if now is not None else self._clock()

    # -- access tokens ----------------------------------------------------------------------------------

    def verify_access_token(
        self,
        token: str,
        *,
        audience: str | None = None,
        now: datetime | None = None,
        dpop: DPoPRequest | None = None,
        proven_jkt: str | None = None,
    ) -> VerifiedToken:
        """An ``AgentAccessCredential`` (RFC 9068 profile), including any delegation chain inside it.

        A token bound to a DPoP key (``cnf.jkt``, RFC 9449 section 6) verifies only with ``dpop``, its request's
        proof by that key (``vc.dpop.check_proof``, with ``ath`` of this token): shown as a bearer token it is
        refused (``DPOP_REQUIRED``). With ``dpop``, an unbound token is refused (``NOT_DPOP_BOUND``).
        ``proven_jkt`` stands for ``dpop`` where the caller checked the request's proof itself (``check_binding``)."""
        moment = now if now is not None else self._clock()  # _now, inline
        ts = moment.timestamp()
        header, claims = self._signed(token, TYP_ACCESS_TOKEN)
        try:
            iss, sub, client_id, jti = claims["iss"], claims["sub"], claims["client_id"], claims["jti"]
        except KeyError:
            iss, sub, client_id, jti = claims.get("iss"), claims.get("sub"), claims.get("client_id"), claims.get("jti")
        if iss != self.issuer_url:
            raise VerificationError(e.INVALID_ISSUER, f"iss {iss!r} is not {self.issuer_url!r}")
        self._times(claims, ts)
        if ACCESS_CREDENTIAL not in vc_types(claims, "vc"):
            raise VerificationError(e.WRONG_CREDENTIAL_TYPE, "not an AgentAccessCredential")
        if not (type(sub) is str and type(client_id) is str and type(jti) is str):
            for name in ("sub", "client_id", "jti"):
                if not isinstance(claims.get(name), str):
                    raise VerificationError(e.MISSING_CLAIM, f"claim {name!r} is required")
        try:
            scope = claims["scope"]
        except KeyError:
            scope = ""
        if type(scope) is not str and not isinstance(scope, str):
            raise VerificationError(e.MALFORMED, "scope must be a space-separated string")
        if audience is None:
            audience = self.resource
            if audience is None and self.require_audience:
                raise VerificationError(
                    e.AUDIENCE_NOT_CONFIGURED,
                    "no audience to check: configure the verifier with resource=<this server's identifier>",
                )
        if audience is not None:
            try:
                aud = claims["aud"]
            except KeyError:
                aud = None
            if aud != audience:  # a single audience, as this issuer signs it: the test below, without the list
                auds = aud if type(aud) is list or isinstance(aud, list) else [aud]
                if audience not in auds:
                    raise VerificationError(e.INVALID_AUDIENCE, f"audience {audience!r} not in {auds!r}")
        if dpop is not None or proven_jkt is not None or "cnf" in claims:
            check_binding(token, claims, dpop, ts, proven_jkt)
        self._status(claims["vc"], moment, ts)
        chain: tuple[DelegationLink, ...] = ()
        if "act" in claims and "delegation_chain" not in claims and _consented_actor(claims):
            return VerifiedToken(claims=claims, kid=header["kid"], chain=chain)
        if "delegation_chain" in claims or "act" in claims:
            try:
                raw_chain = claims["delegation_chain"]
            except KeyError:
                raw_chain = None
            if (type(raw_chain) is not list and not isinstance(raw_chain, list)) or not raw_chain:
                raise VerificationError(e.CHAIN_BROKEN, "delegated token without its delegation_chain")
            chain = self._chain(raw_chain, moment, ts)
            check_token_against_chain(claims, chain)
        return VerifiedToken(claims=claims, kid=header["kid"], chain=chain)

    # -- credentials ------------------------------------------------------------------------------------

    def verify_credential(self, credential: str, *, expected_type: str, now: datetime | None = None) -> dict[str, Any]:
        """An identity or delegation credential (VCDM 1.1 JWT, ``iss`` = issuer DID). Returns its claims."""
        moment = self._now(now)
        return self._credential(credential, expected_type, moment, moment.timestamp())

    def _credential(self, credential: str, expected_type: str, moment: datetime, ts: float) -> dict[str, Any]:
        claims = self._signed(credential, TYP_JWT)[1]
        try:
            iss, sub, jti = claims["iss"], claims["sub"], claims["jti"]
        except KeyError:
            iss, sub, jti = claims.get("iss"), claims.get("sub"), claims.get("jti")
        if iss != self.issuer_did:
            raise VerificationError(e.INVALID_ISSUER, f"iss {iss!r} is not {self.issuer_did!r}")
        self._times(claims, ts)
        types = vc_types(claims, "vc")
        if expected_type not in types or ACCESS_CREDENTIAL in types:
            raise VerificationError(e.WRONG_CREDENTIAL_TYPE, f"types {types!r}, expected {expected_type!r}")
        vc = claims["vc"]
        try:
            subject = vc["credentialSubject"]
        except KeyError:
            subject = None
        if (type(subject) is not dict and not isinstance(subject, dict)) or (
            type(sub) is not str and not isinstance(sub, str)
        ):
            raise VerificationError(e.MISSING_CLAIM, "credentialSubject and sub are required")
        # VCDM 1.1 section 6.3.1: "sub MUST represent the id property contained in the credentialSubject".
        # subject.setdefault("id", sub) != sub, without the call.
        if "id" not in subject:
            subject["id"] = sub
        elif subject["id"] != sub:
            raise VerificationError(e.MALFORMED, "sub differs from credentialSubject.id")
        if type(jti) is not str and not isinstance(jti, str):
            raise VerificationError(e.MISSING_CLAIM, "claim 'jti' is required")
        self._status(vc, moment, ts)
        return claims

    def verify_delegation_chain(
        self, chain: Sequence[str], *, now: datetime | None = None
    ) -> tuple[DelegationLink, ...]:
        """Every link verifies, then the chain rules hold (see ``chain.check_chain``). Root first."""
        moment = self._now(now)
        return self._chain(chain, moment, moment.timestamp())

    def _chain(self, chain: Sequence[str], moment: datetime, ts: float) -> tuple[DelegationLink, ...]:
        links = []
        for compact in chain:
            if type(compact) is not str and not isinstance(compact, str):
                raise VerificationError(e.MALFORMED, "delegation_chain entries must be compact JWTs")
            links.append(
                DelegationLink.from_claims(compact, self._credential(compact, DELEGATION_CREDENTIAL, moment, ts))
            )
        check_chain(links)
        return tuple(links)

    # -- presentations ----------------------------------------------------------------------------------

    def verify_presentation(
        self, presentation: str, *, audience: str, nonce: str, now: datetime | None = None
    ) -> VerifiedPresentation:
        """A VP signed by the holder's did:key: signature, audience, nonce (single use), holder binding, and
        every identity or delegation credential inside it."""
        moment = self._now(now)
        jws = parse_compact(presentation)
        if jws.header.get("typ") != TYP_JWT:
            raise VerificationError(e.INVALID_TYP, f"typ {jws.header.get('typ')!r}, expected 'JWT'")
        claims = jws.payload
        holder = claims.get("iss")
        kid = jws.header.get("kid")
        if not isinstance(holder, str) or not isinstance(kid, str) or kid.split("#", 1)[0] != holder:
            raise VerificationError(e.HOLDER_MISMATCH, "kid must be a verification method of the iss DID")
        holder_key = holder_public_key(holder, "holder")
        if not jws.verify_with(holder_key):
            raise VerificationError(e.INVALID_SIGNATURE, "presentation signature does not verify")
        if VERIFIABLE_PRESENTATION not in vc_types(claims, "vp"):
            raise VerificationError(e.WRONG_CREDENTIAL_TYPE, "not a VerifiablePresentation")
        if claims.get("aud") != audience and audience not in (claims.get("aud") or []):
            raise VerificationError(e.INVALID_AUDIENCE, f"presentation is for {claims.get('aud')!r}")
        self._times(claims, moment.timestamp())
        if claims.get("nonce") != nonce:
            raise VerificationError(e.NONCE_MISMATCH, "nonce does not answer this verifier's challenge")
        verified = []
        for credential in claims["vp"].get("verifiableCredential") or []:
            verified.append(self._presented_credential(credential, holder, moment))
        exp = number(claims, "exp", True) or 0.0
        if not self.nonces.consume(nonce, until=exp + self._leeway, now=moment.timestamp()):
            raise VerificationError(e.NONCE_REPLAYED, "nonce was already used")
        return VerifiedPresentation(holder=holder, claims=claims, credentials=tuple(verified))

    def _presented_credential(self, credential: Any, holder: str, moment: datetime) -> dict[str, Any]:
        if not isinstance(credential, str):
            raise VerificationError(e.MALFORMED, "presented credentials must be compact JWTs")
        kind = vc_types(parse_compact(credential).payload, "vc")
        expected = IDENTITY_CREDENTIAL if IDENTITY_CREDENTIAL in kind else DELEGATION_CREDENTIAL
        claims = self.verify_credential(credential, expected_type=expected, now=moment)
        # Holder binding: the credential must be about the key that signed the presentation.
        if claims["sub"] != holder:
            raise VerificationError(e.HOLDER_MISMATCH, f"credential subject {claims['sub']!r} is not the holder")
        return claims

    # -- status -----------------------------------------------------------------------------------------

    def _status(self, vc: Mapping[str, Any], now: datetime, ts: float) -> None:
        """Every ``credentialStatus`` entry (one, or a list of them: VCDM allows several, e.g. a revocation and a
        suspension entry) is checked against its list; a set bit of purpose revocation or suspension refuses the
        credential. Bits of other purposes (``refresh``, ``message``) do not make a credential invalid."""
        if not self._check_status:
            return
        try:
            entry = vc["credentialStatus"]
        except KeyError:
            return
        if entry is None:
            return
        if type(entry) is dict or isinstance(entry, dict):
            self._status_entry(entry, now, ts)
            return
        if not isinstance(entry, list) or not entry or len(entry) > MAX_STATUS_ENTRIES:
            raise VerificationError(
                e.MALFORMED, "credentialStatus is not a BitstringStatusListEntry (or a list of them)"
            )
        for item in entry:
            if not isinstance(item, dict):
                raise VerificationError(e.MALFORMED, "credentialStatus is not a BitstringStatusListEntry")
            self._status_entry(item, now, ts)

    def _status_entry(self, entry: Mapping[str, Any], now: datetime, ts: float) -> None:
        try:
            kind, url, raw_index = entry["type"], entry["statusListCredential"], entry["statusListIndex"]
            purpose = entry["statusPurpose"]
        except KeyError:
            kind, url, raw_index = entry.get("type"), entry.get("statusListCredential"), entry.get("statusListIndex")
            purpose = entry.get("statusPurpose")
        if kind != "BitstringStatusListEntry":
            raise VerificationError(e.MALFORMED, "credentialStatus is not a BitstringStatusListEntry")
        if (
            (type(url) is not str and not isinstance(url, str))
            or (type(raw_index) is not str and not isinstance(raw_index, str))
            or not raw_index.isdecimal()
        ):
            raise VerificationError(e.MALFORMED, "credentialStatus needs statusListCredential and a decimal index")
        try:
            status_list = self._status_cache.lists[url]  # StatusCache.get, inline
        except KeyError:
            status_list = self.status_list(url, now)
        if status_list.expires_at <= ts:
            status_list = self.status_list(url, now)
        if status_list.purpose != purpose:
            raise VerificationError(e.MALFORMED, f"status purpose {purpose!r} != list's {status_list.purpose!r}")
        try:
            is_set = status_list.bits.get(int(raw_index))
        except StatusListError as exc:
            raise VerificationError(e.MALFORMED, str(exc)) from exc
        if is_set:
            if purpose == "revocation":
                raise VerificationError(e.REVOKED, f"{purpose} bit {raw_index} is set in {url}")
            if purpose == "suspension":
                raise VerificationError(e.SUSPENDED, f"{purpose} bit {raw_index} is set in {url}")

    def status_list(self, url: str, now: datetime) -> CachedList:
        """The verified, decoded list at ``url``, from the cache or the source."""
        cached = self._status_cache.get(url, now.timestamp())
        if cached is not None:
            return cached
        if self._status_source is None:
            raise VerificationError(e.STATUS_UNAVAILABLE, "no status-list source configured")
        try:
            credential = self._status_source.fetch(url)
        except LookupError as exc:
            raise VerificationError(e.STATUS_UNAVAILABLE, f"cannot obtain status list {url}: {exc}") from exc
        claims = self.verify_credential(credential, expected_type=STATUS_LIST_CREDENTIAL, now=now)
        subject = claims["vc"]["credentialSubject"]
        # The list must be the one the entry names, or an attacker could substitute another (empty) list.
        if claims["vc"].get("id", claims.get("jti")) != url:
            raise VerificationError(e.MALFORMED, f"status list credential is not the one at {url}")
        try:
            bits = StatusList.decode(subject.get("encodedList", ""))
        except StatusListError as exc:
            raise VerificationError(e.MALFORMED, f"status list {url}: {exc}") from exc
        expires = now.timestamp() + status_ttl_seconds(subject)
        if self._max_staleness is not None:
            # Bitstring Status List v1.0 section 2.2: ``ttl`` is how long the list may be relied on; counted from
            # when the issuer signed it, not from when this copy reached us (a day-old file is not fresh).
            usable_until = status_list_usable_until(claims, self._max_staleness)
            if usable_until is None or usable_until <= now.timestamp():
                raise VerificationError(e.STATUS_STALE, stale_detail(url, claims, subject, self._max_staleness, now))
            expires = min(expires, usable_until)
        exp = claims.get("exp")
        if isinstance(exp, int | float):
            expires = min(expires, float(exp))
        entry = CachedList(bits=bits, purpose=str(subject.get("statusPurpose")), expires_at=expires)
        self._status_cache.put(url, entry)
        return entry

    def forget_status_lists(self) -> None:
        self._status_cache.clear()

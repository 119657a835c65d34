"""A check-by-check account of one verification, for people and scripts (``agentauth verify``).

The verdict is always the core verifier's; this module only says *which* of its checks failed (from the
reason code, in the order the core runs them) and what the passing ones saw. Nothing here decides validity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from agentauth.sdk.cache import JWKS_UNAVAILABLE
from agentauth.sdk.online import OnlineVerifier
from agentauth.vc import (
    ACCESS_CREDENTIAL,
    DELEGATION_CREDENTIAL,
    IDENTITY_CREDENTIAL,
    STATUS_LIST_CREDENTIAL,
    VerificationError,
    Verifier,
    status_entries,
)
from agentauth.vc import errors as e
from agentauth.vc.dpop import INVALID_DPOP_PROOF, USE_DPOP_NONCE, DPoPRequest
from agentauth.vc.jws import parse_compact

Kind = Literal["access_token", "identity_credential", "delegation_credential", "status_list", "presentation"]
Result = Literal["pass", "fail", "skip"]

_ACCESS = (
    "structure",
    "algorithm",
    "token type",
    "key",
    "signature",
    "issuer",
    "validity period",
    "credential type",
    "claims",
    "audience",
    "DPoP binding",
    "status",
    "delegation chain",
)
_CREDENTIAL = (*_ACCESS[:9], "status")
_PRESENTATION = (
    "structure",
    "algorithm",
    "token type",
    "holder binding",
    "signature",
    "credential type",
    "audience",
    "validity period",
    "nonce",
    "credentials",
    "replay",
)
_STAGE_OF_CODE = {
    e.MALFORMED: "structure",
    e.UNSUPPORTED_ALG: "algorithm",
    e.UNTRUSTED_KEY: "algorithm",
    e.INVALID_TYP: "token type",
    e.UNKNOWN_KID: "key",
    JWKS_UNAVAILABLE: "key",
    e.INVALID_SIGNATURE: "signature",
    e.INVALID_ISSUER: "issuer",
    e.EXPIRED: "validity period",
    e.NOT_YET_VALID: "validity period",
    e.WRONG_CREDENTIAL_TYPE: "credential type",
    e.MISSING_CLAIM: "claims",
    e.INVALID_AUDIENCE: "audience",
    e.REVOKED: "status",
    e.SUSPENDED: "status",
    e.STATUS_UNAVAILABLE: "status",
    e.STATUS_STALE: "status",
    e.HOLDER_MISMATCH: "holder binding",
    e.INVALID_DID: "holder binding",
    e.WEAK_KEY: "holder binding",
    e.NONCE_MISMATCH: "nonce",
    e.NONCE_REPLAYED: "replay",
    # RFC 9449 section 7.1: a DPoP-bound token with its request's proof.
    INVALID_DPOP_PROOF: "DPoP binding",
    USE_DPOP_NONCE: "DPoP binding",
    e.DPOP_REQUIRED: "DPoP binding",
    e.NOT_DPOP_BOUND: "DPoP binding",
    e.DPOP_KEY_MISMATCH: "DPoP binding",
}
_MALFORMED_HINTS = (
    ("cnf", "DPoP binding"),
    ("credentialStatus", "status"),
    ("status", "status"),
    ("@context", "credential type"),
    ("delegation", "delegation chain"),
    ("act ", "delegation chain"),
    ("parent", "delegation chain"),
    ("remainingDepth", "delegation chain"),
)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    result: Result
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    kind: Kind | None
    valid: bool
    code: str | None
    detail: str | None
    checks: tuple[Check, ...]
    claims: dict[str, Any] | None = None
    header: dict[str, Any] = field(default_factory=dict)

    @property
    def revoked(self) -> bool:
        return self.code == e.REVOKED

    @property
    def suspended(self) -> bool:
        return self.code == e.SUSPENDED

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "kind": self.kind,
            "code": self.code,
            "detail": self.detail,
            "checks": [{"name": c.name, "result": c.result, "detail": c.detail} for c in self.checks],
            "header": self.header,
            "claims": self.claims,
        }


def _types(payload: Mapping[str, Any]) -> list[Any]:
    vc = payload.get("vc")
    types = vc.get("type") if isinstance(vc, dict) else None
    return types if isinstance(types, list) else [types]


def detect_kind(header: Mapping[str, Any], payload: Mapping[str, Any]) -> Kind | None:
    """What a token claims to be (unverified): decides which verification applies."""
    if header.get("typ") == "at+jwt" or ACCESS_CREDENTIAL in _types(payload):
        return "access_token"
    if "vp" in payload:
        return "presentation"
    types = _types(payload)
    for name, kind in (
        (IDENTITY_CREDENTIAL, "identity_credential"),
        (DELEGATION_CREDENTIAL, "delegation_credential"),
        (STATUS_LIST_CREDENTIAL, "status_list"),
    ):
        if name in types:
            return kind  # type: ignore[return-value]
    return None


_EXPECTED_TYPE = {
    "identity_credential": IDENTITY_CREDENTIAL,
    "delegation_credential": DELEGATION_CREDENTIAL,
    "status_list": STATUS_LIST_CREDENTIAL,
}


def _when(timestamp: Any, now: datetime) -> str:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        return "no expiry"
    try:
        moment = datetime.fromtimestamp(timestamp, UTC)
    except (OverflowError, ValueError, OSError):
        return f"exp {timestamp}"  # out of range: only ever an unverified claim of a failing token
    seconds = int(timestamp - now.timestamp())
    relative = f"in {_span(seconds)}" if seconds >= 0 else f"{_span(-seconds)} ago"
    return f"expires {moment:%Y-%m-%d %H:%M:%S}Z ({relative})"


def _span(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def _pass_details(
    kind: Kind, header: Mapping[str, Any], claims: Mapping[str, Any], context: dict[str, str], now: datetime
) -> dict[str, str]:
    vc = claims.get("vc") if isinstance(claims.get("vc"), dict) else {}
    assert isinstance(vc, dict)
    entries = status_entries(vc)
    status_text = (
        "; ".join(
            f"not {'suspended' if entry.get('statusPurpose') == 'suspension' else 'revoked'} "
            f"({entry.get('statusListCredential')} #{entry.get('statusListIndex')})"
            for entry in entries
        )
        or "no status entry"
    )
    details = {
        "structure": "compact JWS",
        "algorithm": str(header.get("alg")),
        "token type": str(header.get("typ")),
        "key": str(header.get("kid")),
        "signature": "Ed25519",
        "issuer": str(claims.get("iss")),
        "validity period": _when(claims.get("exp"), now),
        "credential type": ", ".join(str(t) for t in _types(claims) if t != "VerifiableCredential"),
        "claims": f"sub {claims.get('sub')}",
        "status": status_text,
        "delegation chain": f"{len(claims.get('delegation_chain') or [])} links"
        if claims.get("delegation_chain")
        else "none",
    }
    if kind == "access_token":
        details["claims"] = f"sub {claims.get('sub')}, scope {claims.get('scope')!r}"
        cnf = claims.get("cnf")
        bound = cnf.get("jkt") if isinstance(cnf, dict) else None
        details["DPoP binding"] = f"proof by the bound key {bound}" if bound else "not DPoP-bound (a bearer token)"
    if kind == "presentation":
        details["holder binding"] = f"signed by {claims.get('iss')}"
        details["credential type"] = "VerifiablePresentation"
        details["nonce"] = "matches"
        details["replay"] = "first use"
        vp = claims.get("vp") if isinstance(claims.get("vp"), dict) else {}
        assert isinstance(vp, dict)
        details["credentials"] = f"{len(vp.get('verifiableCredential') or [])} verified, all about the holder"
    details.update(context)
    return details


def explain(
    verifier: Verifier | OnlineVerifier,
    token: str,
    *,
    audience: str | None = None,
    nonce: str | None = None,
    check_status: bool = True,
    now: datetime | None = None,
    dpop: DPoPRequest | None = None,
) -> Report:
    """Verify ``token`` (whatever it is) and say how each check went. ``dpop``: the proof a DPoP-bound access
    token came with, and the request it was made for (RFC 9449 section 7.1)."""
    moment = now or datetime.now(UTC)
    try:
        jws = parse_compact(token)
    except VerificationError as exc:
        stage = _STAGE_OF_CODE.get(exc.code, "structure")
        return _report(None, _ACCESS, stage, exc, {}, {}, {}, now=moment)
    header, payload = jws.header, jws.payload
    kind = detect_kind(header, payload)
    if kind is None:
        unknown = VerificationError(
            e.WRONG_CREDENTIAL_TYPE, "not an AgentAuth access token, credential or presentation"
        )
        return _report(None, _CREDENTIAL, "credential type", unknown, header, payload, {}, now=moment)
    stages = _ACCESS if kind == "access_token" else _PRESENTATION if kind == "presentation" else _CREDENTIAL
    context: dict[str, str] = {}
    if not check_status:
        context["status"] = "not checked (--skip-status)"
    if kind == "access_token" and audience is None:
        context["audience"] = "not checked (no --audience)"
    elif audience is not None:
        context["audience"] = audience
    if kind == "presentation" and (audience is None or nonce is None):
        raise ValueError("a presentation is verified against the verifier's audience and nonce")
    if dpop is not None and kind != "access_token":
        raise ValueError("a DPoP proof accompanies an access token only")
    try:
        claims = _verify(verifier, kind, token, audience, nonce, moment, dpop)
    except VerificationError as exc:
        stage = _failed_stage(verifier, kind, payload, exc, moment)
        return _report(kind, stages, stage, exc, header, payload, context, now=moment)
    return _report(kind, stages, None, None, header, claims, context, now=moment, verified=True)


def _verify(
    verifier: Verifier | OnlineVerifier,
    kind: Kind,
    token: str,
    audience: str | None,
    nonce: str | None,
    now: datetime,
    dpop: DPoPRequest | None = None,
) -> dict[str, Any]:
    if kind == "access_token":
        return verifier.verify_access_token(token, audience=audience, now=now, dpop=dpop).claims
    if kind == "presentation":
        assert audience is not None and nonce is not None
        return verifier.verify_presentation(token, audience=audience, nonce=nonce, now=now).claims
    return verifier.verify_credential(token, expected_type=_EXPECTED_TYPE[kind], now=now)


def _failed_stage(
    verifier: Verifier | OnlineVerifier,
    kind: Kind,
    payload: Mapping[str, Any],
    exc: VerificationError,
    now: datetime,
) -> str:
    if exc.code.startswith("chain_"):
        return "delegation chain"
    # A link of the delegation chain, or a credential inside a presentation, fails with the same codes as the
    # outer token: verify the inner ones alone to see whether the failure is theirs.
    inner: Sequence[Any] = ()
    if kind == "access_token":
        inner = payload.get("delegation_chain") or ()
        if inner and _inner_failure(lambda: verifier.verify_delegation_chain(list(inner), now=now), exc):
            return "delegation chain"
    elif kind == "presentation":
        vp = payload.get("vp")
        inner = (vp.get("verifiableCredential") or ()) if isinstance(vp, dict) else ()
        for credential in inner:
            if isinstance(credential, str) and _inner_failure(
                lambda c=credential: _verify_embedded(verifier, c, now), exc
            ):
                return "credentials"
        if exc.code == e.HOLDER_MISMATCH and exc.detail.startswith("credential subject"):
            return "credentials"
    stage = _STAGE_OF_CODE.get(exc.code, "claims")
    if exc.code == e.MALFORMED:
        stage = next((s for hint, s in _MALFORMED_HINTS if hint in exc.detail), "claims")
    return stage


def _verify_embedded(verifier: Verifier | OnlineVerifier, credential: str, now: datetime) -> None:
    payload = parse_compact(credential).payload
    expected = IDENTITY_CREDENTIAL if IDENTITY_CREDENTIAL in _types(payload) else DELEGATION_CREDENTIAL
    verifier.verify_credential(credential, expected_type=expected, now=now)


def _inner_failure(run: Any, outer: VerificationError) -> bool:
    try:
        run()
    except VerificationError as inner:
        return inner.code == outer.code and inner.detail == outer.detail
    return False


def _report(
    kind: Kind | None,
    stages: Sequence[str],
    failed: str | None,
    exc: VerificationError | None,
    header: Mapping[str, Any],
    claims: Mapping[str, Any],
    context: dict[str, str],
    *,
    now: datetime,
    verified: bool = False,
) -> Report:
    """``claims`` are verified when ``verified``, else the unverified payload (used only to describe the checks
    that passed before the failure)."""
    details = _pass_details(kind or "access_token", header, claims, context, now)
    checks: list[Check] = []
    reached = True
    for stage in stages:
        if stage == "delegation chain" and reached and stage != failed and "delegation_chain" not in claims:
            checks.append(Check(stage, "skip", "no delegation"))
        elif stage == failed and exc is not None:
            checks.append(Check(stage, "fail", f"{exc.code}: {exc.detail}"))
            reached = False
        elif not reached:
            checks.append(Check(stage, "skip", "not reached"))
        elif stage in ("status", "audience") and details.get(stage, "").startswith("not checked"):
            checks.append(Check(stage, "skip", details[stage]))
        else:
            checks.append(Check(stage, "pass", details.get(stage, "")))
    return Report(
        kind=kind,
        valid=exc is None,
        code=exc.code if exc else None,
        detail=exc.detail if exc else None,
        checks=tuple(checks),
        claims=dict(claims) if verified else None,
        header=dict(header),
    )

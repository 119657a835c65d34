"""Key compromise: drop a signing key from the JWKS and DID document at once, and revoke all it signed.

Online checks (introspection, every protected route) see the revocation immediately; offline verifiers see
it at their next JWKS refetch (the kid is gone) or status-list refresh (every credential's bit is set).
"""

from __future__ import annotations

from agentauth.errors import NotFound
from agentauth.issuer import audit
from agentauth.issuer.context import RequestContext
from agentauth.issuer.core import IssuerCore
from agentauth.issuer.keyring import IssuerKeys
from agentauth.issuer.revocation import audit_credentials
from agentauth.storage import credentials, status_lists


async def revoke_signing_key(keys: IssuerKeys, core: IssuerCore, kid: str, ctx: RequestContext) -> int:
    """Returns how many credentials were revoked."""
    now = core.clock()
    if keys.ring.get(kid) is None and (await keys.reload()).get(kid) is None:
        raise NotFound(f"no signing key {kid}")
    ring = await keys.drop(kid, now)
    core.credentials.use_ring(ring)
    async with core.sessions.begin() as session:
        revoked = await credentials.revoke(session, now, kid=kid)
        await status_lists.invalidate_published(session)
        audit_credentials(session, ctx, now, revoked, "operator", "signing key compromised")
        audit.record(
            session, ctx, now, action="signing_key.revoked", tenant_id=None, actor="operator",
            target_type="signing_key", target_id=kid, details={"revoked_credentials": len(revoked)},
        )  # fmt: skip
    return len(revoked)


async def adopt_stored_ring(keys: IssuerKeys, core: IssuerCore) -> None:
    """Sign with the stored ring from now on. If a key this process was using has been dropped (by another
    process), revoke what it signed here in the window before we noticed."""
    before = {k.kid for k in core.credentials.ring.keys}
    ring = await keys.reload()
    current = core.credentials.ring
    if [(k.kid, k.state) for k in ring.keys] != [(k.kid, k.state) for k in current.keys]:
        core.credentials.use_ring(ring)
    for kid in before - {k.kid for k in ring.keys}:
        async with core.sessions.begin() as session:
            await credentials.revoke(session, core.clock(), kid=kid)
            await status_lists.invalidate_published(session)

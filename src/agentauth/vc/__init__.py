"""Verifiable Credentials in JWT encoding: issuing, presenting, status lists and offline verification.

Third parties verify AgentAuth credentials with ``Verifier`` alone; nothing here does network or database I/O.
"""

from agentauth.vc.assertions import create_agent_assertion, unverified_issuer, verify_agent_assertion
from agentauth.vc.chain import DelegationLink, check_chain
from agentauth.vc.credentials import (
    ACCESS_CREDENTIAL,
    DELEGATION_CREDENTIAL,
    IDENTITY_CREDENTIAL,
    STATUS_LIST_CREDENTIAL,
    CredentialIssuer,
    StatusEntry,
    jwt_digest,
    new_credential_id,
)
from agentauth.vc.dpop import DPoPRequest, Proof, check_proof, create_proof
from agentauth.vc.errors import VerificationError
from agentauth.vc.jws import ALLOWED_ALGORITHMS
from agentauth.vc.nonces import NonceRegistry
from agentauth.vc.presentation import create_presentation
from agentauth.vc.status import (
    DEFAULT_MAX_STATUS_STALENESS_SECONDS,
    DirectoryStatusLists,
    StaticStatusLists,
    StatusListSource,
    status_entries,
    status_list_filename,
    status_list_usable_until,
)
from agentauth.vc.status_list import MIN_LIST_SIZE, StatusList, StatusListError, random_free_index
from agentauth.vc.verifier import VerifiedPresentation, VerifiedToken, Verifier

__all__ = [
    "ACCESS_CREDENTIAL",
    "ALLOWED_ALGORITHMS",
    "DEFAULT_MAX_STATUS_STALENESS_SECONDS",
    "DELEGATION_CREDENTIAL",
    "IDENTITY_CREDENTIAL",
    "MIN_LIST_SIZE",
    "STATUS_LIST_CREDENTIAL",
    "CredentialIssuer",
    "DPoPRequest",
    "DelegationLink",
    "DirectoryStatusLists",
    "NonceRegistry",
    "Proof",
    "StaticStatusLists",
    "StatusEntry",
    "StatusList",
    "StatusListError",
    "StatusListSource",
    "VerificationError",
    "VerifiedPresentation",
    "VerifiedToken",
    "Verifier",
    "check_chain",
    "check_proof",
    "create_agent_assertion",
    "create_presentation",
    "create_proof",
    "jwt_digest",
    "new_credential_id",
    "random_free_index",
    "status_entries",
    "status_list_filename",
    "status_list_usable_until",
    "unverified_issuer",
    "verify_agent_assertion",
]

"""Decentralized identifiers: ``did:key`` for agents, ``did:web`` for the issuer (pure, no I/O)."""

from agentauth.did.document import (
    DidDocument,
    did_key_document,
    issuer_did_document,
)
from agentauth.did.key import (
    DidKeyError,
    decode_did_key,
    ed25519_to_x25519,
    encode_did_key,
    is_did_key,
)
from agentauth.did.web import did_web_to_url, url_to_did_web

__all__ = [
    "DidDocument",
    "DidKeyError",
    "decode_did_key",
    "did_key_document",
    "did_web_to_url",
    "ed25519_to_x25519",
    "encode_did_key",
    "is_did_key",
    "issuer_did_document",
    "url_to_did_web",
]

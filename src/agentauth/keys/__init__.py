"""Ed25519 keys: key pairs, RFC 8037 JWKs, RFC 7638 thumbprints, the issuer key ring, encryption at rest.

The only layer that touches ``cryptography`` primitives.
"""

from agentauth.keys.ed25519 import KeyError_, KeyPair, PublicKey
from agentauth.keys.jwk import b64url_decode, b64url_encode, jwk_thumbprint, parse_public_jwk
from agentauth.keys.ring import KeyRing, KeyState, SigningKey
from agentauth.keys.sealing import KeyEncryptionKey, generate_kek

__all__ = [
    "KeyEncryptionKey",
    "KeyError_",
    "KeyPair",
    "KeyRing",
    "KeyState",
    "PublicKey",
    "SigningKey",
    "b64url_decode",
    "b64url_encode",
    "generate_kek",
    "jwk_thumbprint",
    "parse_public_jwk",
]

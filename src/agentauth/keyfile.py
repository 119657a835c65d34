"""The embedded default's key-encryption key file: created once, mode 0600, never overwritten.

Production deployments pass ``AGENTAUTH_KEY_ENCRYPTION_KEY`` from a secret store instead.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from agentauth.keys import KeyEncryptionKey, generate_kek

KEK_FILENAME = "kek"


def load_or_create_kek(data_dir: Path, from_env: str | None) -> KeyEncryptionKey:
    """The KEK from the environment if set, else from ``data_dir/kek`` (created 0600 on first start)."""
    if from_env:
        return KeyEncryptionKey.from_text(from_env)
    if not data_dir.exists():
        # The database beside the KEK holds sealed keys and secret hashes: owner-only from the start.
        data_dir.mkdir(parents=True, mode=0o700)
    path = data_dir / KEK_FILENAME
    try:
        # O_EXCL: two processes starting together cannot both write a KEK; the loser reads the winner's.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise PermissionError(f"{path} is readable by others (mode {mode:o}); chmod 600 it") from None
        return _read_when_written(path)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(generate_kek() + "\n")
    return KeyEncryptionKey.from_text(path.read_text(encoding="ascii"))


def _read_when_written(path: Path) -> KeyEncryptionKey:
    # A concurrent first start may have created the file but not yet written it.
    for _ in range(50):
        text = path.read_text(encoding="ascii").strip()
        if text:
            return KeyEncryptionKey.from_text(text)
        time.sleep(0.02)
    raise RuntimeError(f"{path} stays empty; remove it to let AgentAuth create a new one")

"""The embedded default's data directory and key-encryption key file: the directory created 0700, the KEK
created once, mode 0600, never overwritten - and safely so when several processes start at once.

Production deployments pass ``AGENTAUTH_KEY_ENCRYPTION_KEY`` from a secret store instead.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path

from agentauth.keys import KeyEncryptionKey, generate_kek

KEK_FILENAME = "kek"
log = logging.getLogger("agentauth")


def private_dir(path: Path) -> None:
    """Make sure ``path`` exists, created owner-only (0700); warn when an existing one is open to others.

    Every file AgentAuth puts there is created 0600 whatever the directory's mode, but a group- or
    world-accessible directory still lets others list it, or replace files in it when it is writable.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "data directory %s is accessible to group or others (mode %03o); chmod 700 it", path.resolve(), mode
        )


def load_or_create_kek(data_dir: Path, from_env: str | None) -> KeyEncryptionKey:
    """The KEK from the environment if set, else from ``data_dir/kek`` (created 0600 on first start)."""
    if from_env:
        return KeyEncryptionKey.from_text(from_env)
    # exist_ok: N workers or replicas on a fresh directory all get here (the second used to die of
    # FileExistsError, which stopped the whole `serve --workers N`).
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
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

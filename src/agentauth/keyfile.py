"""The embedded default's data directory and key-encryption key file: the directory created 0700, the KEK
created once, mode 0600, never overwritten - and safely so when several processes start at once.

Production deployments pass ``AGENTAUTH_KEY_ENCRYPTION_KEY`` from a secret store instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
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
    if not path.exists():
        _publish_new_kek(path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    # Read back, winner or not: every process starting together ends up with the one KEK that is on disk.
    return _read_when_written(path)


def _publish_new_kek(path: Path) -> None:
    """Write a new KEK to a private temporary file, then hard-link it into place: ``link`` fails when the name
    exists, so of N processes starting at once exactly one KEK appears - complete, never half-written - and the
    others' attempts vanish with their temporary files."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    text = generate_kek() + "\n"
    _write_new(temporary, text)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass  # another process won: its KEK is the one
    except OSError:
        # A file system without hard links: O_EXCL still lets only one process create the file (the others
        # wait in _read_when_written until it is written).
        with contextlib.suppress(FileExistsError):
            _write_new(path, text)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the new name survives a crash of the machine, not only of the process
    finally:
        os.close(directory)


def _write_new(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _read_when_written(path: Path) -> KeyEncryptionKey:
    # A KEK file created by an older version (O_EXCL, then written) may still be empty for a moment.
    for _ in range(50):
        text = path.read_text(encoding="ascii").strip()
        if text:
            return KeyEncryptionKey.from_text(text)
        time.sleep(0.02)
    raise RuntimeError(f"{path} stays empty; remove it to let AgentAuth create a new one")

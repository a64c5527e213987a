"""Digests a forger cannot recompute: HMAC-SHA256 keyed by a secret of this user's.

A cache (frozen-tower features, decoded data stores) is a file anyone with write access to the
cache folder could have written. A plain sha256 proves nothing then: whoever forges the content
recomputes it. The key lives in the user's own config folder, outside every cache and run
folder, made once with 32 random bytes and readable by the user alone; `EMOCLIP_SECRET_FILE`
names another place (a cluster's home folder shared by the nodes of one user).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from emoclip.errors import ConfigError

KEY_BYTES = 32


def secret_path() -> Path:
    """Where this user's key is kept: $EMOCLIP_SECRET_FILE, else the user's config folder."""
    named = os.environ.get("EMOCLIP_SECRET_FILE")
    if named:
        return Path(named).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "emoclip" / "secret.key"


def secret_key() -> bytes:
    """This user's key, made on first use (atomically: concurrent processes agree on one)."""
    path = secret_path()
    try:
        key = _read_key(path)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(KEY_BYTES))
        try:
            os.link(fresh, path)  # fails if another process made the key first: use theirs
        except FileExistsError:
            pass
        finally:
            fresh.unlink()
        key = _read_key(path)
    return key


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        key = handle.read(KEY_BYTES + 1)
    if len(key) != KEY_BYTES:
        raise ConfigError(
            f"{path}: emoclip's key for its caches must hold {KEY_BYTES} bytes; delete the file "
            "and emoclip makes a new one (the caches it signed are then rebuilt)"
        )
    return key


def keyed_digest(chunks: Iterable[bytes], key: bytes | None = None) -> str:
    """The hex HMAC-SHA256 of the concatenated chunks under this user's key."""
    mac = hmac.new(key if key is not None else secret_key(), digestmod=hashlib.sha256)
    for chunk in chunks:
        mac.update(chunk)
    return mac.hexdigest()


def same_digest(expected: object, actual: str) -> bool:
    """Constant-time comparison of a stored digest (any type: it was read from a file)."""
    return isinstance(expected, str) and hmac.compare_digest(expected, actual)

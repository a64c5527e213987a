import os
import stat

import pytest

from emoclip.errors import ConfigError
from emoclip.system.integrity import keyed_digest, same_digest, secret_key, secret_path


@pytest.fixture
def key_file(tmp_path, monkeypatch):
    path = tmp_path / "cfg" / "secret.key"
    monkeypatch.setenv("EMOCLIP_SECRET_FILE", str(path))
    return path


def test_the_key_is_made_once_private_and_reused(key_file):
    assert secret_path() == key_file
    first = secret_key()
    assert len(first) == 32
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert secret_key() == first


def test_a_digest_cannot_be_recomputed_without_the_key(key_file):
    data = [b"features", b"\x00\x01"]
    mine = keyed_digest(data)
    assert same_digest(mine, keyed_digest(data))
    assert not same_digest(mine, keyed_digest(data, key=b"x" * 32))  # a forger's own key
    assert not same_digest(mine, keyed_digest([b"features", b"\x00\x02"]))
    assert not same_digest(None, mine)


def test_a_damaged_key_is_one_line_naming_the_file(key_file):
    key_file.parent.mkdir(parents=True)
    key_file.write_bytes(b"short")
    with pytest.raises(ConfigError, match="secret.key"):
        secret_key()


def test_a_key_behind_a_link_is_refused(key_file, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"k" * 32)
    key_file.parent.mkdir(parents=True)
    key_file.symlink_to(target)
    with pytest.raises(OSError):
        secret_key()

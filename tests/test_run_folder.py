"""versions.json: what produced a run folder."""

import json
import shutil
import subprocess

import pytest

from emoclip.run_folder import git_commit, versions, write_versions
from tests.conftest import REPO


def test_versions_name_the_libraries_and_the_commit(tmp_path):
    write_versions(tmp_path)
    found = json.loads((tmp_path / "versions.json").read_text())
    assert found == versions()
    for package in ("python", "emoclip", "torch", "lightning", "transformers", "hydra-core"):
        assert found[package], package
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True)
    assert found["git_commit"] == head.stdout.decode().strip()
    assert isinstance(found["git_dirty"], bool)


def test_no_commit_outside_a_git_checkout(tmp_path):
    source = tmp_path / "module.py"
    source.write_text("")
    assert git_commit(source) == {"git_commit": None, "git_dirty": None}

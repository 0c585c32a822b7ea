"""The one project root every default output and relative path hangs off, and the check of an output path."""

import os

import pytest

from surf.app import cli, registry
from surf.graphs import generators
from surf.scenarios import scenario
from surf.utils.errors import ConfigError
from surf.utils.paths import REPO, check_output_path


def test_every_module_uses_the_checkout_root():
    # `surf run` without --out writes REPO/runs/<name>: the checkout's runs/, never the package folder
    assert (REPO / "pyproject.toml").is_file() and (REPO / "simulations" / "quickstart.yaml").is_file()
    assert cli.REPO is registry.REPO is generators.REPO is scenario.REPO is REPO


def test_output_paths_that_can_be_written_pass(tmp_path):
    (tmp_path / "run").mkdir()
    for folder in (tmp_path / "run", tmp_path / "new", tmp_path / "new" / "deeper"):
        check_output_path(folder)
    check_output_path(tmp_path / "features.npz", folder=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the check writes nothing


def test_an_output_path_that_cannot_be_written_is_one_line_naming_the_cause(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match="is a file; choose a folder"):
        check_output_path(tmp_path / "afile")
    with pytest.raises(ConfigError, match=r"afile is a file, not a folder; choose another --store"):
        check_output_path(tmp_path / "afile" / "a" / "b", "--store")
    with pytest.raises(ConfigError, match="is a folder; name a file"):
        check_output_path(tmp_path, folder=False)
    monkeypatch.setattr(os, "access", lambda path, mode: str(path) != str(tmp_path))  # as a user who may not write
    with pytest.raises(ConfigError, match=f"{tmp_path} is not writable; choose another --out"):
        check_output_path(tmp_path / "new")

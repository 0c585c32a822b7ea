"""The one project root every default output and relative path hangs off."""

from surf.app import cli, registry
from surf.graphs import generators
from surf.scenarios import scenario
from surf.utils.paths import REPO


def test_every_module_uses_the_checkout_root():
    # `surf run` without --out writes REPO/runs/<name>: the checkout's runs/, never the package folder
    assert (REPO / "pyproject.toml").is_file() and (REPO / "simulations" / "quickstart.yaml").is_file()
    assert cli.REPO is registry.REPO is generators.REPO is scenario.REPO is REPO

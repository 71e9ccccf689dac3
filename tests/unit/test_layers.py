"""The layers import downward only, and gridbus installs as one import package.

contracts <- mappings <- routes; adapters on contracts (and their own protocols); the runtime
(workers) on all of them; the operator tools (gridbus.tools) on everything. Every import of every
module is read from its source, those inside functions and under ``TYPE_CHECKING`` included.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

import gridbus
from gridbus import adapters, contracts, mappings, routes, tools, workers

#: layer -> the layers its modules may import (itself included)
MAY_IMPORT = {
    "contracts": {"contracts"},
    "mappings": {"contracts", "mappings"},
    "routes": {"contracts", "mappings", "routes"},
    "adapters": {"contracts", "adapters"},
    "workers": {"contracts", "mappings", "routes", "adapters", "workers"},
    "tools": {"contracts", "mappings", "routes", "adapters", "workers", "tools"},
}
PACKAGES = {"contracts": contracts, "mappings": mappings, "routes": routes, "adapters": adapters,
            "workers": workers, "tools": tools}
#: The folders' own names, which are not importable packages once gridbus is installed.
OLD_TOP_LEVEL = {"contracts", "mappings", "routes", "adapters", "workers", "tools"}
ROOT = Path(__file__).resolve().parents[2]


def _modules(layer: str):
    folder = Path(PACKAGES[layer].__file__).parent
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(folder).with_suffix("").parts
        name = ".".join(("gridbus", layer, *parts)).removesuffix(".__init__")
        yield name, path, path.name == "__init__.py"


def _imports(name: str, path: Path, is_package: bool):
    """Absolute names of what the module imports, relative imports resolved."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # ``from gridbus import workers`` imports gridbus.workers
                if module == "gridbus":
                    yield node.lineno, f"gridbus.{alias.name}"


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "gridbus" and len(parts) > 1 and parts[1] in MAY_IMPORT:
        return parts[1]
    return None


def test_every_layer_holds_modules():
    for layer in MAY_IMPORT:
        assert list(_modules(layer)), layer


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_imports_go_downward_only(layer):
    upward = []
    for name, path, is_package in _modules(layer):
        for line, imported in _imports(name, path, is_package):
            if imported.split(".")[0] in OLD_TOP_LEVEL:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {imported} (not under gridbus)")
                continue
            target = _layer_of(imported)
            if target is not None and target not in MAY_IMPORT[layer]:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {imported} ({layer} may not import {target})")
    assert not upward, "\n".join(upward)


def test_the_walk_sees_an_upward_import(tmp_path):
    """The checker itself: a mapping importing the runtime is caught, also inside a function."""
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from gridbus.workers.store import Store\n    from ..routes import model\n")
    found = list(_imports("gridbus.mappings.bad", module, False))
    assert (2, "gridbus.workers.store") in found and (3, "gridbus.routes") in found
    assert {_layer_of(m) for _, m in found} == {"workers", "routes"}


def test_pyproject_installs_every_package_folder_under_gridbus():
    """A folder holding modules that is missing from pyproject's ``packages`` would be left out of
    a wheel while the source tree's editable install still finds it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(config["packages"])
    found = {"gridbus"}
    for layer, package in PACKAGES.items():
        folder = Path(package.__file__).parent
        for init in folder.rglob("__init__.py"):
            found.add(".".join(("gridbus", layer, *init.parent.relative_to(folder).parts)))
        for module in folder.rglob("*.py"):
            assert (module.parent / "__init__.py").exists(), f"{module} is in a folder without __init__.py"
    assert declared == found
    assert all(name == "gridbus" or name.startswith("gridbus.") for name in declared)
    assert config["package-dir"]["gridbus.workers"] == "workers"


def test_the_version_is_the_installed_distributions():
    from importlib.metadata import version

    assert gridbus.__version__ == version("gridbus")


def test_the_demo_parts_share_a_helper_instead_of_importing_each_other():
    parts = {name: (path, pkg) for name, path, pkg in _modules("tools") if name.startswith("gridbus.tools.demo.")}
    hv, retail = parts["gridbus.tools.demo.hv_install"], parts["gridbus.tools.demo.retail"]
    assert "gridbus.tools.demo.retail" not in {m for _, m in _imports("gridbus.tools.demo.hv_install", *hv)}
    assert "gridbus.tools.demo.hv_install" not in {m for _, m in _imports("gridbus.tools.demo.retail", *retail)}
    assert "gridbus.tools.demo.common" in {m for _, m in _imports("gridbus.tools.demo.retail", *retail)}

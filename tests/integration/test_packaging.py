"""What ``pip install .`` puts in site-packages: the one import package gridbus, complete."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import gridbus

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
        check=True, timeout=300,
    )
    (built,) = out.glob("gridbus-*.whl")
    return built


def test_the_wheel_holds_gridbus_alone(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"gridbus", f"gridbus-{gridbus.__version__}.dist-info"}
    for folder in ("contracts", "mappings", "routes", "adapters", "workers", "tools"):
        assert f"gridbus/{folder}/__init__.py" in names
    # the contracts' files travel with the code
    assert "gridbus/contracts/canonical/message.xsd" in names
    assert any(name.startswith("gridbus/contracts/examples/") for name in names)
    assert any(name.endswith(".wsdl") for name in names)
    # and the console's templates and stylesheet with its code
    assert "gridbus/tools/console/templates/base.html" in names
    assert "gridbus/tools/console/static/console.css" in names
    entry_points = zipfile.ZipFile(wheel).read(f"gridbus-{gridbus.__version__}.dist-info/entry_points.txt").decode()
    assert "gridbus = gridbus.tools.cli:main" in entry_points


def test_the_installed_package_runs_from_anywhere(wheel, tmp_path):
    """Installed from the wheel alone (not the source tree): ``python -m gridbus --version``, and
    the routes load with their schemas."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True, timeout=300,
    )
    # bin/ holds the gridbus console script
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info") and p.name != "bin") == ["gridbus"]
    env = {**os.environ, "PYTHONPATH": str(target)}
    version = subprocess.run([sys.executable, "-m", "gridbus", "--version"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"gridbus {gridbus.__version__}"
    where = subprocess.run(
        [sys.executable, "-c", "import gridbus.workers, gridbus.routes as r; print(gridbus.workers.__file__); print(len(r.ROUTES))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert where.returncode == 0, where.stderr
    file, count = where.stdout.split()
    assert Path(file).is_relative_to(target) and int(count) > 0

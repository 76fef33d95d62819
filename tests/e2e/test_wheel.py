"""The wheel, built from this checkout and installed (not editable) into a fresh venv outside it,
plans against the testbed and opens the runbook pages its output links to: playbooks/,
templates/ and runbooks/ travel inside the package and are found with importlib.resources.

Building needs setuptools from the package index and the fresh venv takes migrator's
dependencies from it: the same index `make venv` installs from."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.testbed

REPO_ROOT = Path(__file__).resolve().parents[2]
# What a build must not see: local state, caches and what an earlier build left.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "build", "dist", "*.egg-info", ".migrator", ".pytest_cache",
    ".hypothesis", ".mypy_cache", ".ruff_cache",
)


def run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def ok(out: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert out.returncode == 0, f"{out.args}: exit {out.returncode}\n{out.stderr[-3000:]}\n{out.stdout[-2000:]}"
    return out


@pytest.mark.slow
def test_the_installed_wheel_plans_from_anywhere_and_opens_the_runbook_its_plan_links_to(baseline, tmp_path):
    source, dist, venv = tmp_path / "source", tmp_path / "dist", tmp_path / "venv"
    try:
        # Built from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
        shutil.copytree(REPO_ROOT, source, ignore=NOT_SOURCE)
        ok(run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source))
        [wheel] = dist.glob("patroni_migrator-*.whl")
        names = zipfile.ZipFile(wheel).namelist()
        for shipped in ("migrator/playbooks/switchover.yml", "migrator/playbooks/seed.yml",
                        "migrator/templates/runbook.md.j2", "migrator/runbooks/switchover.md"):
            assert shipped in names, shipped
        assert not [n for n in names if ".data/" in n], "nothing may land outside the package (sys.prefix)"

        # A clean venv (no --system-site-packages): the shared venv's editable install cannot leak in.
        ok(run(sys.executable, "-m", "venv", venv))
        ok(run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel, timeout=600))
        outside = tmp_path / "elsewhere"
        outside.mkdir()
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("MIGRATOR_")}
        env["XDG_STATE_HOME"] = str(tmp_path / "xdg")
        site_packages = Path(ok(run(venv / "bin" / "python", "-c", "import migrator; print(migrator.__file__)",
                                    cwd=outside, env=env)).stdout.strip()).parent.parent
        assert site_packages.is_relative_to(venv) and site_packages.name == "site-packages", site_packages

        migrate = venv / "bin" / "migrate"
        inventory = str(baseline.inventory_path)
        plan = ok(run(migrate, "plan", "-i", inventory, "--dc", "dc2", cwd=outside, env=env))
        lines = plan.stdout.splitlines()
        assert f"runbooks: {site_packages / 'migrator' / 'runbooks'} (`migrate runbook PAGE` prints one)" in lines
        assert [x for x in lines if x.startswith("state: ")] == [
            f"state: {tmp_path / 'xdg' / 'migrator' / 'demo'} (journal, plans, reports; from XDG_STATE_HOME)"]

        runbook = ok(run(migrate, "plan", "-i", inventory, "--dc", "dc2", "--format", "runbook", cwd=outside,
                         env=env)).stdout
        links = set(re.findall(r"`(/[^`#]+\.md)#([a-z0-9-]+)`", runbook))
        assert ("demote" in runbook) and len(links) > 10, runbook[:2000]
        for page, anchor in links:  # every link opens an installed page, at an anchor that is there
            assert Path(page).is_relative_to(site_packages / "migrator" / "runbooks"), page
            assert f'<a id="{anchor}"></a>' in Path(page).read_text(), f"{page}#{anchor}"
        page = next(p for p, a in links if a == "phase-demote")
        section = ok(run(migrate, "runbook", f"{page}#phase-demote", cwd=outside, env=env)).stdout
        assert section.startswith('<a id="phase-demote"></a>\n### 4. demote'), section[:300]
        assert list(outside.iterdir()) == [], "plan wrote into the working directory"

        # Installed where sys.prefix says nothing (as with `pip install --user` or Debian's
        # /usr/local): the package still finds its own files.
        target = tmp_path / "target"
        ok(run(venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "-q", "--target", target, wheel))
        env["PYTHONPATH"] = str(target)
        plan = ok(run(venv / "bin" / "python", "-m", "migrator.cli", "plan", "-i", inventory, "--dc", "dc2",
                      cwd=outside, env=env))
        assert f"runbooks: {target / 'migrator' / 'runbooks'} (`migrate runbook PAGE` prints one)" in \
            plan.stdout.splitlines(), plan.stdout[-500:]
    finally:
        # Not left for the artifact scan to read: a venv is ~100 MB of someone else's files.
        for path in (venv, source, dist, tmp_path / "target"):
            shutil.rmtree(path, ignore_errors=True)

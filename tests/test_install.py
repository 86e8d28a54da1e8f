"""install.sh on a machine where ~/.local/bin is not on PATH: the README's first command must still run cclink."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cclink

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHECKOUT = Path(__file__).resolve().parent.parent
INSTALL_TIMEOUT = 900  # a guard: pip may download every dependency on a new machine


def run_installer(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """install.sh with a fresh HOME and a PATH that has neither ~/.local/bin nor pipx."""
    path = os.pathsep.join(p for p in ("/usr/local/bin", "/usr/bin", "/bin") if Path(p).is_dir())
    env = {"HOME": str(home), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{path}", "LANG": "C.UTF-8"}
    env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})
    return subprocess.run(
        ["bash", str(CHECKOUT / "install.sh"), *args],
        env={**env, "PYTHON": sys.executable},
        cwd=home,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    if shutil.which("pipx", path=os.pathsep.join(("/usr/local/bin", "/usr/bin", "/bin"))):
        pytest.skip("pipx is on the system PATH, so install.sh would use it instead of the venv under test")
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def test_install_then_run_works_where_local_bin_is_not_on_path(home: Path) -> None:
    result = run_installer(home, "--run", "--version")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"cclink {cclink.__version__}"
    assert "is not on your PATH" in result.stdout
    venv = home / ".local" / "share" / "cclink" / "venv"
    assert (home / ".local" / "bin" / "cclink").resolve() == venv / "bin" / "cclink"
    # Every subpackage made it into the install, not only what --version loads.
    every_layer = (
        "import cclink.cli.app, cclink.flows.publish, cclink.flows.pickup, cclink.flows.manage, cclink.dev.demo"
    )
    assert subprocess.run([venv / "bin" / "python", "-c", every_layer], cwd=home, timeout=60).returncode == 0


def test_an_unknown_argument_is_refused_before_installing(home: Path) -> None:
    result = run_installer(home, "--frobnicate")

    assert result.returncode == 1
    assert "unknown argument '--frobnicate'" in result.stderr
    assert not (home / ".local").exists()

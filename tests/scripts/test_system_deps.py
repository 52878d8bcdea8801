"""scripts/system-deps.sh (what `make test` runs first): chromium and redis-server, installed with apt-get when missing
and root, else a line saying which tests will skip. Run against fake `id` and `apt-get` on a PATH of their own."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "system-deps.sh"
BASH = shutil.which("bash") or "/bin/bash"

# Records its arguments; `install` puts an executable stub of each package on PATH (as the real one would).
FAKE_APT = """#!{bash}
echo "$*" >> "{log}"
[ "${{FAKE_APT_FAIL:-}}" = 1 ] && exit 100
if [ "$1" = install ]; then
  for arg in "$@"; do
    case "$arg" in -*|install) ;; *) printf '#!{bash}\\n' > "{bin}/$arg"; chmod +x "{bin}/$arg" ;; esac
  done
fi
exit 0
"""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    apt_calls: list[str]


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """A PATH with only fake `id` (uid from $FAKE_UID) and `apt-get`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text(f'#!{BASH}\necho "$FAKE_UID"\n')
    (bin_dir / "apt-get").write_text(FAKE_APT.format(bash=BASH, log=tmp_path / "apt.log", bin=bin_dir))
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return bin_dir


def run(bin_dir: Path, uid: int, *present: str, **env: str) -> Result:
    for command in present:
        (bin_dir / command).write_text(f"#!{BASH}\n")
        (bin_dir / command).chmod(0o755)
    proc = subprocess.run(
        [BASH, str(SCRIPT)],
        env={"PATH": str(bin_dir), "FAKE_UID": str(uid), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    log = bin_dir.parent / "apt.log"
    calls = log.read_text().splitlines() if log.exists() else []
    return Result(proc.returncode, proc.stdout, proc.stderr, calls)


def test_nothing_to_do_when_both_are_installed(fake_bin: Path) -> None:
    r = run(fake_bin, 0, "chromium", "redis-server")
    assert (r.returncode, r.stdout, r.stderr, r.apt_calls) == (0, "", "", [])


def test_not_root_says_which_tests_will_skip(fake_bin: Path) -> None:
    r = run(fake_bin, 1000)
    assert r.returncode == 0 and r.apt_calls == [] and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 2
    assert "chromium is missing (not root, so not installed): the browser tests (tests/web) will skip" in lines[0]
    assert "redis-server is missing" in lines[1] and "Redis jobs tests" in lines[1] and "will skip" in lines[1]


def test_root_installs_only_what_is_missing(fake_bin: Path) -> None:
    r = run(fake_bin, 0, "chromium")
    assert r.returncode == 0, r.stderr
    assert r.apt_calls == ["update -qq", "install -y -qq redis-server"]
    assert "installing redis-server" in r.stdout and "redis-server installed" in r.stdout
    assert (fake_bin / "redis-server").exists()
    again = run(fake_bin, 0)  # now a no-op
    assert again.apt_calls == r.apt_calls and again.stdout == ""


def test_a_failed_install_fails(fake_bin: Path) -> None:
    r = run(fake_bin, 0, FAKE_APT_FAIL="1")
    assert r.returncode != 0 and not (fake_bin / "chromium").exists()


def test_skip_leaves_the_system_alone(fake_bin: Path) -> None:
    r = run(fake_bin, 0, "redis-server", SYSTEM_DEPS="skip")
    assert r.returncode == 0 and r.apt_calls == []
    assert "chromium is missing (SYSTEM_DEPS=skip)" in r.stderr and "redis" not in r.stderr


def test_make_test_runs_it_first_and_ci_relies_on_it() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "\ntest: system-deps export\n" in makefile and "scripts/system-deps.sh" in makefile
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci and "apt-get" not in ci
    assert "scripts/system-deps.sh" in (REPO / "README.md").read_text()

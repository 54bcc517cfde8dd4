"""Shared test setup: offline, no telemetry, a private cache, paths to the shared real speech."""

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

# The same offline / no-telemetry defaults the CLI sets, for code the tests call directly.
from callqa.cli import OFFLINE_DEFAULTS  # callqa.cli imports nothing heavy

for _var, _value in OFFLINE_DEFAULTS.items():
    os.environ[_var] = _value

ROOT = Path(__file__).resolve().parents[1]
# Real speech lives beside the checkout (../shared/realdata); CALLQA_REALDATA points elsewhere.
REALDATA = Path(os.environ.get("CALLQA_REALDATA") or ROOT.parent / "shared" / "realdata")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Caches go to a temp dir so tests never read a developer's .cache/callqa."""
    os.environ["CALLQA_CACHE_DIR"] = str(tmp_path_factory.mktemp("callqa-cache"))
    yield


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The shared real speech. A test that needs it fails (never skips) when it is missing."""
    if not (REALDATA / "asr").is_dir():
        pytest.fail(
            f"shared real speech not found at {REALDATA}: put the shared/ folder beside the "
            "checkout or set CALLQA_REALDATA"
        )
    return REALDATA


def _drop_file_access_override() -> None:
    """In a child process: give up root's right to read files whatever their mode.

    Root reads mode-000 files; without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH in the bounding
    set, the program it execs gets EACCES like any other user. (A non-root user needs nothing.)
    """
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2


def run_callqa(
    args: list[str], cwd: Path, *, obey_file_modes: bool = False, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run the real `callqa` CLI in a child process (the installed entry point's module).

    `obey_file_modes=True` makes a mode-000 file unreadable to it even when the tests run as
    root, so the permission cases are real.
    """
    return subprocess.run(
        [sys.executable, "-m", "callqa.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_drop_file_access_override if obey_file_modes else None,
    )

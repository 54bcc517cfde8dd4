"""Shared test setup: offline, no telemetry, a private cache, paths to the shared real speech."""

import os
from pathlib import Path

import pytest

for _var, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "ORT_DISABLE_TELEMETRY": "1",
    "GX_ANALYTICS_ENABLED": "false",
}.items():
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

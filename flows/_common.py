"""What the flows share: params loading, the callqa logger, the environment of subprocesses.

The flows import `callqa` (installed, or `PYTHONPATH=src`); Prefect is imported only here in
flows/. `callqa.*` INFO records reach the Prefect UI when PREFECT_LOGGING_EXTRA_LOGGERS=callqa is
set (without it they show on the console only).
"""

from __future__ import annotations

import logging
import os
import sys
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

logging.getLogger("callqa").setLevel(logging.INFO)

# Dask worker processes import the flow modules by name: give them flows/ on their path.
_path = os.environ.get("PYTHONPATH", "")
if str(ROOT / "flows") not in _path.split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT / "flows"), _path) if x)


@lru_cache(maxsize=8)
def load(params: str):
    """params.yaml (cached per process: Dask workers load it once)."""
    from callqa.cli import OFFLINE_DEFAULTS
    from callqa.config import load_params

    for var, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(var, value)
    return load_params(Path(params))


def subprocess_env() -> dict[str, str]:
    """The flow's environment, offline, with this interpreter's bin (callqa, dvc) on PATH."""
    from callqa.cli import OFFLINE_DEFAULTS

    env = {**OFFLINE_DEFAULTS, **os.environ}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env

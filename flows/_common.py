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

from callqa.cli import OFFLINE_DEFAULTS

ROOT = Path(__file__).resolve().parents[1]

# No telemetry, no hub: set before any flow module imports Prefect (its temporary server reads
# PREFECT_SERVER_ANALYTICS_ENABLED when it starts); a user's own values win.
for _var, _value in OFFLINE_DEFAULTS.items():
    os.environ.setdefault(_var, _value)

logging.getLogger("callqa").setLevel(logging.INFO)

# Dask worker processes import the flow modules by name: give them flows/ on their path.
_path = os.environ.get("PYTHONPATH", "")
if str(ROOT / "flows") not in _path.split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT / "flows"), _path) if x)


@lru_cache(maxsize=8)
def load(params: str):
    """params.yaml (cached per process: Dask workers load it once)."""
    from callqa.config import load_params

    return load_params(Path(params))


def subprocess_env() -> dict[str, str]:
    """The flow's environment, offline, with this interpreter's bin (callqa, dvc) on PATH."""
    env = {**OFFLINE_DEFAULTS, **os.environ}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env

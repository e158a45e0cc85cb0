"""Validation against FHIR R4 itself (4.0.1), with the fhir.resources release that models it.

fhir.resources 8 (pydantic 2, in the project's environment) models R4B and R5 only; its last
release modelling R4 (4.0.1) is 6.1.0, on pydantic 1. So R4 validation runs in a small virtual
environment of its own (made once under .cache/, like the Kafka jars), in a subprocess.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

R4_RELEASE = "fhir.resources==6.1.0"  # FHIR 4.0.1
PYDANTIC = "pydantic>=1.10,<2"
VENV = Path(__file__).resolve().parents[1] / ".cache" / "fhir-r4"

_CHECK = """
import json, sys
import fhir.resources
from fhir.resources import get_fhir_model_class
assert fhir.resources.__fhir_version__ == "4.0.1", fhir.resources.__fhir_version__
errors = []
for n, resource in enumerate(json.load(sys.stdin)):
    try:
        get_fhir_model_class(resource["resourceType"]).parse_obj(resource)
    except Exception as exc:
        errors.append(f"#{n} {resource.get('resourceType')}: {exc}")
json.dump(errors, sys.stdout)
"""


def r4_python() -> Path:
    """The interpreter of the R4 environment, made on first use (safe across processes)."""
    python = VENV / "bin" / "python"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / "fhir-r4.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (VENV / ".installed").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", R4_RELEASE, PYDANTIC],
                check=True,
            )
            (VENV / ".installed").touch()
    return python


def r4_errors(resources: Sequence[dict[str, Any]]) -> list[str]:
    """Why each resource is not valid FHIR R4 (4.0.1); empty when all are."""
    done = subprocess.run(
        [str(r4_python()), "-c", _CHECK],
        input=json.dumps(list(resources)),
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    errors: list[str] = json.loads(done.stdout)
    return errors

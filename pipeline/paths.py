"""Where the project lives. A leaf: imports nothing of the project."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The folder holding params.yaml: DVC stages run from it; tests point PIPELINE_ROOT elsewhere."""
    return Path(os.environ.get("PIPELINE_ROOT", os.getcwd())).resolve()

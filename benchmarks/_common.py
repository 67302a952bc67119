"""What every benchmark script writes besides its own numbers: when, where, on what."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch


def machine() -> dict[str, Any]:
    """Date, platform, CPU count, torch threads and accelerator of this run."""
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.platform(),
            "processor": platform.processor(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def write_results(path: str | Path, benchmark: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` plus :func:`machine` facts as indented JSON to ``path``; print where."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": benchmark, **machine(), **payload}, indent=2, default=str) + "\n")
    print(f"\nwrote {out}")
    return out

"""DDP: 2 torchrun processes (gloo, CPU) match single-process math; the -m entry trains a ResNet."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from torch import nn

from edgekd import data
from edgekd.distillation import train

TIMEOUT_S = 120


class _NoBN(nn.Module):  # BatchNorm would normalise per rank; this net's math is exact under DDP
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


WORKER = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {here!r})
    from test_ddp import _NoBN, KW
    from edgekd import data
    from edgekd.distillation import ddp, train
    ddp.init_from_env()
    torch.manual_seed(0)
    r = train(_NoBN(), data.load("digits", limit=200), **KW)
    if ddp.is_main():
        torch.save(r.model.state_dict(), {out!r})
    torch.distributed.destroy_process_group()
""")
KW = {"epochs": 1, "batch_size": 32, "optimizer": "sgd", "lr": 0.1, "progress": False}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(args: list[str], cwd: Path) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    assert proc.returncode == 0, out[-3000:]


def test_two_processes_match_single_process(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(here=str(Path(__file__).parent), out=str(tmp_path / "ddp.pt")))
    _torchrun([str(script)], tmp_path)
    torch.manual_seed(0)
    single = train(_NoBN(), data.load("digits", limit=200), **KW).model.state_dict()
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    for k, v in single.items():
        torch.testing.assert_close(ddp[k], v, rtol=0, atol=1e-5, msg=k)


def test_module_entry_trains_resnet(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _torchrun(["-m", "edgekd.distillation.ddp", "--data", "digits", "--limit", "200", "--student", "resnet8",
               "--epochs", "1", "--batch-size", "32", "--out", str(out)], tmp_path)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and 0 <= metrics["val_acc"] <= 1
    assert (out / "student.pt").exists() and (out / "checkpoint.pt").exists()


FOLDER_WORKER = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {here!r})
    from test_ddp import _NoBN3, FOLDER_KW
    from edgekd import data
    from edgekd.distillation import ddp, train
    ddp.init_from_env()
    splits = data.load({spec!r}, image_size=8, augment="crop+flip", stats_samples=32)
    torch.manual_seed(0)
    r = train(_NoBN3(), splits, **FOLDER_KW)
    if ddp.is_main():
        torch.save(r.model.state_dict(), {out!r})
    torch.distributed.destroy_process_group()
""")
FOLDER_KW = {"epochs": 2, "batch_size": 16, "optimizer": "sgd", "lr": 0.1, "progress": False, "num_workers": 1}


class _NoBN3(_NoBN):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, 3)


def test_two_processes_on_an_augmented_image_folder_match_one(tmp_path: Path) -> None:
    """Each item's augmentation is seeded by (seed, epoch, index): two torchrun processes, each with its own
    DataLoader worker, see exactly the crops one process sees, so the weights agree."""
    from imagegen import write_folder

    spec = f"folder:{write_folder(tmp_path / 'photos', n_classes=3, per_class=20)}"
    script = tmp_path / "worker.py"
    script.write_text(FOLDER_WORKER.format(here=str(Path(__file__).parent), spec=spec, out=str(tmp_path / "ddp.pt")))
    _torchrun([str(script)], tmp_path)
    splits = data.load(spec, image_size=8, augment="crop+flip", stats_samples=32)
    assert len(splits.train) % FOLDER_KW["batch_size"] > 1  # a last global batch of 1 is dropped under DDP only
    torch.manual_seed(0)
    single = train(_NoBN3(), splits, **{**FOLDER_KW, "num_workers": 2}).model.state_dict()
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    for k, v in single.items():
        torch.testing.assert_close(ddp[k], v, rtol=0, atol=1e-5, msg=k)

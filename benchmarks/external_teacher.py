"""KD from a confident teacher trained *outside* edgekd: why plain KD can lose, and which defaults do not.

Users bring teachers from their own training loop: their own normalisation, many epochs, logits far
more confident than an edgekd-trained teacher's. Reported (issue 28, item 4): with such a teacher (a
well-trained MNIST CNN), a small zoo student, all labels, a short schedule and an equal CE/KD mix, the
KD student ended several points below the student alone. This script reproduces that with teachers
trained here in a plain PyTorch loop (:func:`train_external`: PyTorch's MNIST-example CNN, Adadelta,
standard MNIST normalisation ``(x - 0.1307) / 0.3081`` on [0, 1] pixels, no edgekd code), wrapped so they
take edgekd's normalised tensors, and measures what moves the gap:

- the temperature against confident logits (T = 4, 2, 1), the CE weight, logit standardization
  (``kd(ls)``), DKD / DIST, and a longer schedule;
- in the full-label regime (all 3,500 train labels of MNIST-5k, plain batches) and in the few-label
  one (500 labels + the 3,000 other images unlabelled, 64 + 64 per batch, as ``kd_subset.py``),
  against the student alone at equal steps, on 3 seeds (paired).

Each finished run is appended to ``<work>/runs.jsonl`` (``--report`` writes the JSON)::

    nice python benchmarks/external_teacher.py            # runs what is missing, prints the table
    python benchmarks/external_teacher.py --report        # -> benchmarks/results/external_teacher.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402
from kd_methods import agreement, logits_of  # noqa: E402

from edgekd.data import few_labels, load  # noqa: E402
from edgekd.distillation import distill, evaluate  # noqa: E402
from edgekd.models import create  # noqa: E402

HERE = Path(__file__).resolve().parent
WORK = HERE / "results" / "external_teacher_work"
STUDENT = "resnet8x0_5"
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # what a plain MNIST loop normalises with
SEEDS = (0, 1, 2)


class MnistNet(nn.Module):
    """PyTorch's examples/mnist CNN (1.2M parameters): two convs, max-pool, dropout, two linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 3, 1), nn.Conv2d(32, 64, 3, 1)
        self.drop1, self.drop2 = nn.Dropout(0.25), nn.Dropout(0.5)
        self.fc1, self.fc2 = nn.Linear(9216, 128), nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = self.drop1(x).flatten(1)
        return self.fc2(self.drop2(F.relu(self.fc1(x))))


class External(nn.Module):
    """An outside model behind edgekd's input: undo edgekd's normalisation, apply the model's own."""

    def __init__(self, net: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.net, self.mean, self.std = net, mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = x * self.std + self.mean
        return self.net((pixels - MNIST_MEAN) / MNIST_STD)


def train_external(x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int = 0, recipe: str = "example") -> nn.Module:
    """A plain loop on [0, 1] pixels, batch 64: ``example`` is PyTorch's MNIST example (Adadelta lr 1, step decay
    0.7 per epoch); ``adam`` is Adam at 1e-3 with no decay, run long: a teacher that memorises its train set."""
    torch.manual_seed(seed)
    net = MnistNet()
    if recipe == "example":
        opt: torch.optim.Optimizer = torch.optim.Adadelta(net.parameters(), lr=1.0)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    else:
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=1.0)
    xn = (x - MNIST_MEAN) / MNIST_STD
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(y)).split(64):
            opt.zero_grad()
            F.cross_entropy(net(xn[idx]), y[idx]).backward()
            opt.step()
        sched.step()
    return net.eval()


# name -> (method, options); "alone" is the student with CE only
RECIPES: dict[str, tuple[str, dict[str, Any]]] = {
    "alone": ("ce", {}),
    "kd T4 1:1 (default)": ("ce + kd", {}),
    "kd T4 0.5:0.5": ("ce:0.5 + kd:0.5", {}),
    "kd T2 1:1": ("ce + kd", {"kd_T": 2.0}),
    "kd T1 1:1": ("ce + kd", {"kd_T": 1.0}),
    "kd T4 ce 1 kd 0.1": ("ce + kd:0.1", {}),
    "kd(ls) T2 1:1": ("ce + kd(ls)", {"kd_T": 2.0}),
    "kd(ls) T2 1:9": ("ce + kd:9(ls)", {"kd_T": 2.0}),
    "dkd": ("ce + dkd", {"dkd_warmup": 1, "dkd_beta": 2.0}),
    "dist": ("ce + dist", {}),
}


def _row_key(r: dict[str, Any]) -> tuple[str, str, str, int, int]:
    """A run's identity; the student alone has no teacher, so one run serves every teacher."""
    return ("none" if r["recipe"] == "alone" else r["teacher"], r["regime"], r["recipe"], r["epochs"], r["seed"])


def _done(path: Path) -> dict[tuple[str, str, str, int, int], dict[str, Any]]:
    if not path.exists():
        return {}
    return {_row_key(r): r for r in (json.loads(x) for x in path.read_text().splitlines() if x.strip())}


def teacher_stats(teacher: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """How confident the teacher is on the images it distils: max probability at T = 1 and 4, logit spread."""
    z = logits_of(teacher, x, "cpu")
    return {"max_p_T1": float(F.softmax(z, 1).max(1).values.mean()), "max_p_T4": float(F.softmax(z / 4, 1).max(1).values.mean()),
            "logit_std": float(z.std(1).mean()), "top_gap": float((z.topk(2, 1).values[:, 0] - z.topk(2, 1).values[:, 1]).mean())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teachers", default="example:14",
                   help="comma list of RECIPE:EPOCHS plain-loop teachers (example: PyTorch's MNIST example; adam)")
    p.add_argument("--epochs", default="3", help="comma list: student epochs (full-label: passes over 3,500 images)")
    p.add_argument("--regimes", default="full,few")
    p.add_argument("--recipes", default="", help="comma list of RECIPES names (default: all)")
    p.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report", action="store_true")
    p.add_argument("--work", default=str(WORK))
    p.add_argument("--out", default=str(HERE / "results" / "external_teacher.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    jsonl = work / "runs.jsonl"
    splits = load("mnist5k", seed=0)
    x_tr, y_tr = splits.train.tensors
    pixels = x_tr * splits.std[0] + splits.mean[0]
    recipes = [r for r in RECIPES if not a.recipes or r in a.recipes.split(",")]
    teachers: dict[str, tuple[nn.Module, dict[str, Any]]] = {}
    for spec in a.teachers.split(","):
        recipe, te = spec.split(":")[0], int(spec.split(":")[1])
        name = f"mnistnet_{te}ep" if recipe == "example" else f"mnistnet_{recipe}_{te}ep"
        path = work / f"teacher_{name}.pt"
        net = MnistNet()
        if path.exists():
            net.load_state_dict(torch.load(path, weights_only=True))
        else:
            t0 = time.perf_counter()
            net = train_external(pixels, y_tr, te, recipe=recipe)
            torch.save(net.state_dict(), path)
            print(f"plain-loop teacher {name}: {time.perf_counter() - t0:.0f} s", flush=True)
        teacher = External(net.eval(), splits.mean[0], splits.std[0]).eval()
        info = {"recipe": recipe, "epochs": te, "val_acc": evaluate(teacher, splits.val)["acc"], "test_acc": evaluate(teacher, splits.test)["acc"],
                "train": teacher_stats(teacher, x_tr), "test_stats": teacher_stats(teacher, splits.test.tensors[0])}
        teachers[name] = (teacher, info)
        print(f"teacher {name}: val {info['val_acc']:.4f} test {info['test_acc']:.4f} on train: "
              f"max p {info['train']['max_p_T1']:.4f} (T=4: {info['train']['max_p_T4']:.3f}), top gap {info['train']['top_gap']:.1f}",
              flush=True)
    regimes = {"full": splits, "few": few_labels(splits, 500, seed=0, transfer=True)}
    test_x = splits.test.tensors[0]
    for tname, (teacher, _) in teachers.items():
        test_t = logits_of(teacher, test_x, "cpu")
        for regime in a.regimes.split(","):
            for epochs in (int(v) for v in a.epochs.split(",")):
                for recipe in recipes:
                    for seed in (int(s) for s in a.seeds.split(",")):
                        key = _row_key({"teacher": tname, "regime": regime, "recipe": recipe, "epochs": epochs,
                                        "seed": seed})
                        if a.report or key in _done(jsonl):
                            continue
                        spec, opts = RECIPES[recipe]
                        loop: dict[str, Any] = {"epochs": epochs, "seed": seed, "progress": False, "batch_size": 64}
                        data = regimes[regime]
                        if regime == "few":  # 64 labelled + 64 unlabelled per batch; alone: the 500 labels, as many steps
                            loop = {**loop, "batch_size": 128, "labelled_per_batch": 64}
                            if spec == "ce":
                                data = few_labels(splits, 500, seed=0, transfer=False)
                                steps = epochs * math.ceil(3000 / 64)
                                loop = {**loop, "batch_size": 64, "labelled_per_batch": 0, "epochs": round(steps / 8)}
                        torch.manual_seed(seed)
                        student = create(STUDENT, num_classes=10, in_channels=1)
                        t0 = time.perf_counter()
                        r = distill(teacher if spec != "ce" else None, student, data, spec, **loop, **opts)
                        row = {"teacher": tname, "regime": regime, "recipe": recipe, "epochs": epochs, "seed": seed,
                               "spec": r.method, "options": opts, "loop_epochs": loop["epochs"],
                               "batch_size": loop["batch_size"],
                               "val_acc": evaluate(r.model, splits.val)["acc"], "test_acc": evaluate(r.model, splits.test)["acc"],
                               **agreement(test_t, logits_of(r.model, test_x, "cpu")), "wall_s": time.perf_counter() - t0}
                        with jsonl.open("a") as f:
                            f.write(json.dumps(row) + "\n")
                        print(f"{tname} {regime} {epochs}ep {recipe} seed {seed}: test {row['test_acc']:.4f} "
                              f"({row['wall_s']:.0f} s)", flush=True)
    rows = list(_done(jsonl).values())
    summary = []
    for (tname, regime, epochs) in sorted({(r["teacher"], r["regime"], r["epochs"]) for r in rows if r["recipe"] != "alone"}):
        base = {r["seed"]: r["test_acc"] for r in rows if (r["regime"], r["epochs"], r["recipe"]) == (regime, epochs, "alone")}
        for recipe in RECIPES:
            rs = sorted((r for r in rows if (r["regime"], r["epochs"], r["recipe"]) == (regime, epochs, recipe)
                         and (recipe == "alone" or r["teacher"] == tname)), key=lambda r: r["seed"])
            if not rs:
                continue
            deltas = [r["test_acc"] - base[r["seed"]] for r in rs if r["seed"] in base]
            summary.append({"teacher": tname, "regime": regime, "epochs": epochs, "recipe": recipe, "spec": rs[0]["spec"],
                            "options": rs[0]["options"], "seeds": [r["seed"] for r in rs], "test_acc": [r["test_acc"] for r in rs],
                            "acc_mean": statistics.mean(r["test_acc"] for r in rs), "paired_delta": deltas,
                            "wins": sum(d > 0 for d in deltas), "agree_mean": statistics.mean(r["agree"] for r in rs)})
    print("| teacher | regime | epochs | recipe | spec | top-1 % (mean) | paired Δ vs alone | ahead on |")
    print("|---|---|---|---|---|---|---|---|")
    for s in summary:
        opts = ", ".join(f"{k}={v}" for k, v in s["options"].items())
        print(f"| {s['teacher']} | {s['regime']} | {s['epochs']} | {s['recipe']} | `{s['spec']}`{' (' + opts + ')' if opts else ''} | "
              f"{100 * s['acc_mean']:.2f} | {', '.join(f'{100 * d:+.2f}' for d in s['paired_delta'])} | "
              f"{s['wins']}/{len(s['paired_delta'])} |")
    if a.report:
        write_results(a.out, "external_teacher", {"setting": {"data": "mnist5k (seed-0 split)", "student": STUDENT,
                                                              "teacher": "PyTorch examples/mnist CNN, plain loop"},
                                                  "teachers": {k: v[1] for k, v in teachers.items()},
                                                  "summary": summary, "runs": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

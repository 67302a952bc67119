"""KD + QAT: features survive as graph outputs, the QAT graph trains and becomes real int8 files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.convert.parity import file_accuracy
from edgekd.convert.qat import convert_graph, write_int8
from edgekd.data import load
from edgekd.edge.qat import FeatureOutputs, distill_qat
from edgekd.errors import ConfigError
from edgekd.models import create


@pytest.fixture(scope="module")
def digits() -> object:
    return load("digits", limit=600)


def test_feature_outputs_match_hooks() -> None:
    m = create("resnet8", num_classes=10, in_channels=1).eval()
    x = torch.randn(3, 1, 8, 8)
    logits, f2 = FeatureOutputs(m, ["layer2"])(x)
    assert torch.equal(logits, m(x)) and f2.shape == (3, 32, 4, 4)
    with pytest.raises(ConfigError, match="no module 'layer9'"):
        FeatureOutputs(m, ["layer9"])


def test_kd_qat_converts_and_runs_in_both_runtimes(digits: object, tmp_path: object) -> None:
    torch.manual_seed(0)
    teacher = create("resnet8", num_classes=10, in_channels=1).eval()
    student = create("resnet8", num_classes=10, in_channels=1)
    r = distill_qat(teacher, student, digits, "ce:0.5+kd:0.5+fitnet:1", epochs=2, batch_size=64, lr=3e-3,
                    fitnet_student_taps=["layer2"])
    assert r.taps == ["layer2"]
    assert len(r.history) == 2 and np.isfinite(r.history[-1]["train_fitnet"])
    assert r.history[-1]["train_ce"] < r.history[0]["train_ce"]  # it learns under fake quant
    out = r.prepared(torch.randn(5, 1, 8, 8))  # any batch size; logits + the tapped feature
    assert out[0].shape == (5, 10) and out[1].shape == (5, 32, 4, 4)
    fq = [n for n in r.prepared.graph.nodes if "fake_quant" in str(n.target) or "activation_post_process" in n.name]
    assert fq, "no fake-quantize nodes in the QAT graph"

    x, y = digits.test.tensors
    q = convert_graph(r.prepared)
    with torch.no_grad():
        torch_acc = float((q(x).argmax(1) == y).float().mean())
    assert torch_acc > 0.3  # chance is 0.1
    files = write_int8(r.prepared, (x[:1],), tmp_path, converted=q)
    assert set(files) == {"pte", "tflite"}
    from edgekd.convert.tflite import graph_summary

    summary = graph_summary(files["tflite"])
    assert summary["float_compute_ops"] == [] and summary["tensor_dtypes"].get("int8", 0) > 10
    fp32_bytes = sum(p.numel() for p in student.parameters()) * 4
    assert files["pte"].stat().st_size < 0.5 * fp32_bytes  # int8 weights, not float
    for path in files.values():
        acc = file_accuracy(path, x[:120], y[:120])
        with torch.no_grad():
            ref = float((q(x[:120]).argmax(1) == y[:120]).float().mean())
        assert abs(acc - ref) <= 0.05, (path, acc, ref)


def test_needs_a_teacher(digits: object) -> None:
    with pytest.raises(ConfigError, match="needs a teacher"):
        distill_qat(None, create("resnet8", num_classes=10, in_channels=1), digits, "ce+kd")


def test_cached_teacher_matches_live_teacher(digits: object) -> None:
    """KD+QAT reading a TeacherCache by sample index trains exactly as with the teacher run live."""
    from edgekd.distillation import TeacherCache

    torch.manual_seed(0)
    teacher = create("resnet8", num_classes=10, in_channels=1).eval()
    student = create("resnet8", num_classes=10, in_channels=1)
    cache = TeacherCache(teacher, digits.train)
    runs = [distill_qat(teacher, student, digits, "ce:0.5+kd:0.5", epochs=1, batch_size=64, cache=c)
            for c in (False, cache)]
    assert cache.computed == 1  # ensure() found the cache current and did not rebuild it
    x = digits.test.tensors[0][:32]
    live, cached = (r.prepared(x)[0].detach() for r in runs)
    assert torch.allclose(live, cached, atol=1e-4), (live - cached).abs().max()
    assert runs[0].history[0]["train_kd"] == pytest.approx(runs[1].history[0]["train_kd"], rel=1e-4)


def test_qat_runs_in_the_trainer_and_resumes_exactly(digits: object, tmp_path: object) -> None:
    """QAT is a Trainer strategy: an interrupted run resumed from its checkpoint ends where an uninterrupted
    one does (graph weights, observers, optimiser, schedule and RNG all restored)."""

    class Stop(Exception):
        pass

    def stop(row: dict) -> None:
        raise Stop

    torch.manual_seed(0)
    teacher = create("resnet8", num_classes=10, in_channels=1).eval()
    student = torch.nn.Sequential(  # two conv-BN pairs: a fast fake-quant graph with observers and BN stats
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10))
    kw = dict(method="ce:0.5+kd:0.5", epochs=2, batch_size=64)
    full = distill_qat(teacher, student, digits, out_dir=tmp_path / "full", **kw)
    with pytest.raises(Stop):
        distill_qat(teacher, student, digits, out_dir=tmp_path / "cut", on_epoch_end=stop, **kw)
    resumed = distill_qat(teacher, student, digits, out_dir=tmp_path / "cut", resume=True, **kw)
    assert [r["epoch"] for r in resumed.history] == [1, 2] and (tmp_path / "cut" / "checkpoint.pt").is_file()
    x = digits.test.tensors[0][:32]
    assert torch.equal(full.prepared(x)[0], resumed.prepared(x)[0])
    assert resumed.history[-1]["train_loss"] == full.history[-1]["train_loss"]


def test_qat_takes_the_loop_settings_of_distill(digits: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """distill_qat reads labelled_per_batch and val_every as distill() does (``edgekd distill --qat`` passes every
    loop setting through): on a transfer set each batch carries the labelled share, and validation is every N-th."""
    from edgekd.data import few_labels
    from edgekd.edge.qat import QATStrategy

    few = few_labels(digits, 40, transfer=True)  # 40 labelled train images, the rest y = -1
    labelled: list[int] = []
    step = QATStrategy.step

    def recording(self: QATStrategy, x: torch.Tensor, y: torch.Tensor, *a: object) -> object:
        labelled.append(int((y >= 0).sum()))
        return step(self, x, y, *a)

    monkeypatch.setattr(QATStrategy, "step", recording)
    torch.manual_seed(0)
    teacher = create("resnet8", num_classes=10, in_channels=1).eval()
    student = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                  torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))
    r = distill_qat(teacher, student, few, "ce:0.5+kd:0.5", epochs=3, batch_size=32, labelled_per_batch=8,
                    val_every=2)
    assert [h["epoch"] for h in r.history if "val_acc" in h] == [2, 3]
    assert labelled and set(labelled) == {8}


def test_qat_names_every_loop_setting_the_edge_pipeline_forwards() -> None:
    """``edgekd distill --qat`` forwards each loop setting (all but optimizer/device, which it rejects when set,
    and epochs, which it splits into kd/ft epochs) to distill_qat by keyword; one that distill_qat does not name
    falls into ``**method_kwargs`` and fails as "belongs to no method" (CI's failure for labelled_per_batch)."""
    import dataclasses
    import inspect

    from edgekd.settings import LoopSettings

    named = set(inspect.signature(distill_qat).parameters)
    forwarded = {f.name for f in dataclasses.fields(LoopSettings)} - {"optimizer", "device"}
    assert forwarded - named == set(), f"distill_qat does not take {sorted(forwarded - named)}"

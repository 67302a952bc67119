"""The Android demo's plain-Java core agrees with the Python reference (``edgekd.android``).

The Java core (``android_demo/core``) is compiled with the system ``javac`` and driven through its
CLI (``dev.edgekd.core.Cli``): the same image must give the same preprocessed tensor, bit for bit,
and the same raw output the same top-k. Bundles come from hand-written manifests (every layout,
dtype and channel order) and from a real ``edgekd.export`` of a tiny digits CNN, whose files are
then run with their real runtimes on the Java core's input.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edgekd import android
from edgekd.bundle import MANIFEST, Bundle, ModelFile, Preprocessing, Quantization, TensorSpec

REPO = Path(__file__).resolve().parents[1]
CORE_SRC = REPO / "android_demo" / "core" / "src" / "main" / "java"

pytestmark = pytest.mark.skipif(shutil.which("javac") is None or shutil.which("java") is None,
                                reason="needs a JDK (javac, java) to build the Android demo's Java core")


@pytest.fixture(scope="module")
def java_core(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The core's classes, compiled as Android's toolchain would accept them (--release 11)."""
    out = tmp_path_factory.mktemp("java_core")
    sources = [str(p) for p in sorted(CORE_SRC.rglob("*.java"))]
    subprocess.run(["javac", "--release", "11", "-encoding", "UTF-8", "-d", str(out), *sources],
                   check=True, capture_output=True, text=True)
    return out


def _cli(classes: Path, *args: str | Path) -> str:
    r = subprocess.run(["java", "-cp", str(classes), "dev.edgekd.core.Cli", *map(str, args)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def java_preprocess(classes: Path, bundle_dir: Path, key: str, image: np.ndarray, tmp: Path) -> np.ndarray:
    img = android.write_pnm(tmp / "image.pnm", image)
    out = tmp / "x.bin"
    line = _cli(classes, "preprocess", bundle_dir / MANIFEST, key, img, out).strip()
    fields = dict(kv.split("=") for kv in line.split())
    shape = tuple(int(s) for s in fields["shape"].split(","))
    return np.frombuffer(out.read_bytes(), dtype=np.dtype(fields["dtype"]).newbyteorder("<")).reshape(shape)


def java_topk(classes: Path, bundle_dir: Path, key: str, raw: np.ndarray, k: int, tmp: Path) -> list[tuple[int, float]]:
    path = tmp / "y.bin"
    path.write_bytes(np.ascontiguousarray(raw).astype(raw.dtype.newbyteorder("<")).tobytes())
    rows = [line.split("\t") for line in _cli(classes, "topk", bundle_dir / MANIFEST, key, path, k).splitlines()]
    return [(int(i), float(p)) for i, p, _label in rows]


def assert_same_topk(java: list[tuple[int, float]], py: list[tuple[int, float]]) -> None:
    assert [i for i, _ in java] == [i for i, _ in py]
    np.testing.assert_allclose([p for _, p in java], [p for _, p in py], rtol=1e-12, atol=1e-15)


# -- hand-written manifests: every layout, dtype and channel order ---------------------------------------
@dataclass(frozen=True)
class Case:
    order: str  # GRAY | RGB | BGR
    layout: str  # NCHW | NHWC
    dtype: str  # float32 | int8 | uint8
    size: tuple[int, int]  # model input (h, w)
    image: tuple[int, ...]  # raw image shape (H, W) or (H, W, C)
    resize_to: int | None = None  # shorter side before a centre crop (None: resize straight to size)


CASES = [
    Case("GRAY", "NCHW", "float32", (8, 8), (8, 8)),  # no resize
    Case("GRAY", "NHWC", "int8", (8, 8), (13, 9, 3)),  # RGB photo into a gray model, downscale
    Case("RGB", "NCHW", "int8", (6, 10), (6, 10, 3)),
    Case("RGB", "NHWC", "uint8", (16, 16), (5, 7, 3)),  # upscale
    Case("BGR", "NHWC", "float32", (7, 5), (20, 11, 3)),
    Case("RGB", "NCHW", "float32", (4, 4), (9, 9)),  # gray image into an RGB model
    Case("RGB", "NCHW", "float32", (8, 8), (15, 23, 3), resize_to=10),  # shorter side 15 -> 10, crop 8x8
    Case("GRAY", "NHWC", "int8", (6, 6), (31, 12), resize_to=7),  # portrait: width is the shorter side
    Case("RGB", "NHWC", "float32", (12, 12), (5, 9, 3), resize_to=13),  # upscale then crop (odd offset)
]


def _synthetic_bundle(case: Case, root: Path) -> tuple[Bundle, str]:
    c = 1 if case.order == "GRAY" else 3
    h, w = case.size
    shape = (1, c, h, w) if case.layout == "NCHW" else (1, h, w, c)
    quant = {"float32": None, "int8": Quantization(0.0312, -7), "uint8": Quantization(0.0196, 131)}[case.dtype]
    out_dtype = "int8" if quant else "float32"
    f = ModelFile(path="model.tflite", format="tflite", precision="int8" if quant else "fp32", converter="onnx2tf",
                  bytes=0, sha256="", inputs=(TensorSpec("in", shape, case.dtype, case.layout, quant),),
                  outputs=(TensorSpec("out", (1, 10), out_dtype, None, Quantization(0.0917, 3) if quant else None),))
    mean, std = ((0.1307,), (0.3081,)) if c == 1 else ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    b = Bundle(root=root, model_name="synthetic", inputs=(TensorSpec("input", (1, c, h, w), "float32", "NCHW"),),
               outputs=(TensorSpec("output", (1, 10), "float32"),), files=[f],
               preprocessing=Preprocessing(size=case.size, mean=mean, std=std, channel_order=case.order,
                                           **({"resize": "shorter_side", "resize_to": case.resize_to, "crop": "center"}
                                              if case.resize_to else {})),
               labels=[f"label {i}" for i in range(10)])
    b.save()
    return b, f.key


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.order}-{c.layout}-{c.dtype}-{c.size}-from{c.image}"
                         + (f"-short{c.resize_to}" if c.resize_to else ""))
def test_java_preprocessing_matches_python_bit_for_bit(case: Case, java_core: Path, tmp_path: Path) -> None:
    bundle, key = _synthetic_bundle(case, tmp_path / "bundle")
    image = np.random.default_rng(CASES.index(case)).integers(0, 256, case.image, dtype=np.uint8)
    py = android.preprocess(image, bundle, key)
    java = java_preprocess(java_core, bundle.root, key, image, tmp_path)
    assert py.dtype == np.dtype(case.dtype) and java.dtype == py.dtype
    assert java.shape == py.shape == bundle.files[0].inputs[0].shape
    np.testing.assert_array_equal(java.view(np.uint8), py.view(np.uint8))  # bit for bit


@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[3]], ids=["float32", "int8", "uint8-input"])
def test_java_topk_matches_python(case: Case, java_core: Path, tmp_path: Path) -> None:
    bundle, key = _synthetic_bundle(case, tmp_path / "bundle")
    spec = bundle.files[0].outputs[0]
    rng = np.random.default_rng(1)
    raw = (rng.integers(-128, 128, spec.shape).astype(np.int8) if spec.dtype == "int8"
           else rng.normal(0, 3, spec.shape).astype(np.float32))
    top = raw.max()
    raw[raw == top] -= 1
    raw.flat[4] = raw.flat[7] = top  # a tie at the top: the lower index must come first
    py = android.topk(android.dequantize(raw, spec), k=5)
    assert py[0][0] == 4 and py[1][0] == 7
    assert_same_topk(java_topk(java_core, bundle.root, key, raw, 5, tmp_path), py)


def test_java_latency_stats_match_the_harness(java_core: Path, tmp_path: Path) -> None:
    from edgekd.bench.stats import Stats

    for n in (1, 2, 7, 100, 1001):
        samples = np.random.default_rng(n).lognormal(0.5, 0.4, n)
        path = tmp_path / "samples.txt"
        path.write_text("\n".join(repr(float(s)) for s in samples))
        java = {k: float(v) for k, v in (kv.split("=") for kv in _cli(java_core, "stats", path).split())}
        py = Stats.from_samples(samples.tolist())
        for k in ("p50", "p90", "p99", "min", "max"):
            assert java[k] == getattr(py, k), (n, k)  # same interpolation: exactly equal
        assert java["mean"] == pytest.approx(py.mean, rel=1e-13)  # numpy sums pairwise
        assert java["std"] == pytest.approx(py.std, rel=1e-9, abs=1e-15)


# -- image files: the Java core's decoder + preprocessing vs the training pipeline -----------------------------
FILES = [("jpg", "RGB", 2), ("jpg", "RGB", 0), ("jpg", "L", 0), ("png", "RGB", 0), ("png", "L", 0),
         ("png", "P", 0), ("png", "RGBA", 0), ("png", "I;16", 0)]


@pytest.mark.parametrize(("ext", "mode", "subsampling"), FILES,
                         ids=[f"{e}-{m}" + ("-420" if s == 2 else "") for e, m, s in FILES])
@pytest.mark.parametrize("order", ["RGB", "GRAY"])
def test_java_decodes_files_like_the_training_pipeline(ext: str, mode: str, subsampling: int, order: str,
                                                        java_core: Path, tmp_path: Path) -> None:
    """The same JPEG or PNG through javax.imageio + the Java core, and through edgekd's data pipeline
    (torchvision.io decoding, the eval transform): at most one grey level apart per pixel (PNG: the same)."""
    import torch
    from imagegen import pattern
    from PIL import Image

    from edgekd.data.decode import decode
    from edgekd.data.transforms import eval_transform

    rng = np.random.default_rng(7)
    rgb = pattern(2, 3, 37, 53, rng)
    rgb = np.clip(rgb.astype(np.int64) + np.linspace(0, 90, 53)[None, :, None], 0, 255).astype(np.uint8)
    path = tmp_path / f"photo.{ext}"
    if mode == "I;16":
        Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257 + 11).save(path)
    elif mode == "RGBA":
        Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 77, np.uint8)]), "RGBA").save(path)
    else:
        opts = {"quality": 90, "subsampling": subsampling} if ext == "jpg" else {}
        Image.fromarray(rgb).convert(mode).save(path, **opts)
    c = 1 if order == "GRAY" else 3
    mean, std = (0.45,) * c, (0.27,) * c
    pre = Preprocessing(size=(16, 16), mean=mean, std=std, channel_order=order, resize="shorter_side",
                        resize_to=20, crop="center")
    f = ModelFile(path="m.pte", format="pte", precision="fp32", converter="executorch", bytes=0, sha256="",
                  inputs=(TensorSpec("x", (1, c, 16, 16), "float32", "NCHW"),), outputs=(TensorSpec("y", (1, 3), "float32"),))
    bundle = Bundle(root=tmp_path / "b", model_name="m", inputs=f.inputs, outputs=f.outputs, files=[f],
                    preprocessing=pre)
    bundle.save()
    out = tmp_path / "x.bin"
    _cli(java_core, "preprocess", bundle.root / MANIFEST, f.key, path, out)
    java = np.frombuffer(out.read_bytes(), dtype="<f4").reshape(1, c, 16, 16)
    py = eval_transform(decode(path, order), pre)[None].numpy()
    grey = np.abs(java - py) * np.asarray(std)[None, :, None, None] / pre.scale
    assert grey.max() <= (1.0 if ext == "jpg" else 1e-3), grey.max()
    assert torch.equal(torch.from_numpy(py), eval_transform(decode(path, order), pre)[None])  # deterministic


# -- a real exported bundle ------------------------------------------------------------------------------
def _tiny_cnn_class() -> type:
    from torch import nn

    class TinyCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(1, 8, 3, padding=1)
            self.c2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.fc(self.c2(self.c1(x).relu()).relu().mean((2, 3)))

    return TinyCNN


RAW_SCALE = 16  # sklearn digits are 0..16; as 8-bit pixels: 0..256 → clip to 255


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Bundle, np.ndarray, np.ndarray]:
    """A tiny CNN trained on 8-bit digits with the bundle's own preprocessing, exported to pte + tflite."""
    import torch
    from sklearn.datasets import load_digits
    from torch import nn

    from edgekd.convert import export

    d = load_digits()
    raw = np.clip(d.images * RAW_SCALE, 0, 255).astype(np.uint8)  # (N, 8, 8) "photos"
    pre = Preprocessing(size=(8, 8), mean=(0.3,), std=(0.4,), channel_order="GRAY")
    x = torch.tensor((raw.astype(np.float32) / 255.0 - 0.3) / 0.4).unsqueeze(1)
    y = torch.tensor(d.target)
    torch.manual_seed(0)
    model = _tiny_cnn_class()()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(150):
        i = torch.randint(0, 1500, (64,))
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    bundle = export(model.eval(), (x[:1],), formats=("pte", "tflite", "pt2"), precision=("fp32", "int8"),
                    calibration=x[:64], parity_data=(x[1500:1580], y[1500:1580]),
                    labels=[f"digit {i}" for i in range(10)], preprocessing=pre, model_name="tiny_digits",
                    out_dir=tmp_path_factory.mktemp("android_bundle"), progress=False)
    with torch.no_grad():
        eager = model.eval()(x[1500:1520]).numpy()
    return bundle, raw[1500:1520], eager


def _run_raw(bundle: Bundle, f: ModelFile, x: np.ndarray) -> np.ndarray:
    """Run one file on an already-preprocessed input; return its raw output (the file's own dtype)."""
    path = bundle.path_of(f)
    if f.format == "pte":
        from edgekd.convert.executorch import pte_runner

        return pte_runner(path)[0](x)
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


def test_exported_bundle_java_and_python_agree_end_to_end(exported, java_core: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle, images, eager = exported
    app_files = [f for f in bundle.files if f.format in android.ANDROID_FORMATS]
    assert {f.key for f in app_files} == {"pte/fp32/executorch", "pte/int8/executorch",
                                          "tflite/fp32/litert-torch", "tflite/int8/litert-torch"}
    for f in app_files:
        agree = 0
        for n, image in enumerate(images[:6]):
            py = android.preprocess(image, bundle, f.key)
            java = java_preprocess(java_core, bundle.root, f.key, image, tmp_path)
            assert java.dtype == py.dtype and java.shape == py.shape, f.key
            np.testing.assert_array_equal(java.view(np.uint8), py.view(np.uint8), err_msg=f.key)
            raw = _run_raw(bundle, f, java)
            py_top = android.topk(android.dequantize(raw, f.outputs[0]), k=3)
            assert_same_topk(java_topk(java_core, bundle.root, f.key, raw, 3, tmp_path), py_top)
            agree += py_top[0][0] == int(eager[n].argmax())
        assert agree >= (6 if f.precision == "fp32" else 5), f"{f.key}: top-1 agrees with eager on {agree}/6"


def test_copy_to_android_assets(exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    bundle, images, _ = exported
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "old_model.pte").write_bytes(b"stale")
    (assets / MANIFEST).write_text('{"files": [{"path": "old_model.pte"}]}')
    logical = np.stack([android.preprocess(im, bundle, "pte/fp32/executorch")[0] for im in images[:3]])
    samples = android.samples_from_tensors(logical, np.arange(3), bundle.preprocessing, bundle.labels, n=3)
    written = android.copy_to_android_assets(bundle, assets, samples=samples)
    copied = Bundle.load(assets)
    copied.verify()  # sizes and sha256 match the copied files
    assert {f.format for f in copied.files} == {"pte", "tflite"}  # no pt2: the app cannot load it
    assert copied.preprocessing == bundle.preprocessing and copied.labels == bundle.labels
    assert not (assets / "old_model.pte").exists()
    pngs = sorted((assets / "samples").glob("*.png"))
    assert [p.name for p in pngs] == ["00_digit_0.png", "01_digit_1.png", "02_digit_2.png"]
    assert set(pngs) <= set(written)
    np.testing.assert_array_equal(np.asarray(Image.open(pngs[1])), images[1])  # raw pixels back, as PNG

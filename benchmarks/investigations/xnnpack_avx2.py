"""fp32 ``.pte`` vs ``.tflite`` on XNNPACK's AVX2 code path, reproduced on an AVX-512 host (issue 30).

XNNPACK picks its micro-kernels once, from cpuinfo's ISA flags. ExecuTorch's XNNPACK reads the exported
``cpuinfo_isa`` of ``executorch/lib/libexecutorch_threadpool.so``; LiteRT's reads the private copy inside
``ai_edge_litert/libpywrap_litert_common.so`` (located through its symbol table). ``--isa avx2`` calls
each copy's ``cpuinfo_initialize()`` and clears its AVX-512 / AVX-VNNI / AMX flags before either
XNNPACK initialises (ExecuTorch's does so when its backend library loads), so both runtimes run, at
native speed, the kernels an AVX2 + FMA CPU without AVX-512 (Zen 2/3, most Intel client cores) runs:
ExecuTorch's ``xnn_f32_igemm_minmax_ukernel_5x16__fma3_broadcast_prfm`` (GCC 13 build) against LiteRT's
(clang 18 build). ``--isa native`` runs what the host has. Each (isa, threads) runs in its own process
(the flags cannot be set back), timing every file in alternating blocks of ``invoke()`` calls: wall
clock, and at one thread the calling thread's CPU time, which a busy machine does not inflate.

At one thread it also reads the ETDump of the fp32 ``.pte`` (per-operator times) and, with
``--im2col``, times the export-side workaround that was tried: every convolution rewritten as NHWC
im2col (pad, slices, concatenations) + ``linear``, so that XNNPACK runs its hand-written assembly GEMM
(``xnn_f32_gemm_minmax_ukernel_6x16__asm_amd64_fma3_broadcast``) instead of the convolution kernel.

    python benchmarks/investigations/xnnpack_avx2.py                       # needs the bundle benchmarks/runtimes.py exported
    python benchmarks/investigations/xnnpack_avx2.py --isa avx2 --threads 1 --im2col

Writes ``benchmarks/results/xnnpack_avx2.json`` and prints a table. x86-64 Linux only; the host needs AVX2 + FMA.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent  # investigations/: bare_loop.py
BENCH = HERE.parent  # benchmarks/: _common.py and results/
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(HERE))
from _common import RUNTIMES_BUNDLE, bundle_files, write_results  # noqa: E402

FILES = ("tflite/fp32/litert-torch", "pte/fp32/executorch", "tflite/int8/litert-torch", "pte/int8/executorch")
# cpuinfo's struct cpuinfo_x86_isa on x86-64 (pytorch/cpuinfo include/cpuinfo.h): one bool per field, in order.
# Bytes 22, 24, 28 are avx, fma3, avx2; 23 is avxvnni; 29 on are avx512f ... amx_fp16 (and amx_fp8 in newer
# versions, one byte longer), avx_vnni_int8/int16, avx_ne_convert. Sizes seen: 0x55 (executorch 1.5.1),
# 0x56 (ai-edge-litert 2.3.0, with amx_fp8).
AVX, AVXVNNI, FMA3, AVX2, AVX512F = 22, 23, 24, 28, 29
CLEAR_UPTO = {0x55: 56, 0x56: 57}  # first byte after the AVX-512/AMX/AVX-VNNI-INT block


def _clear_avx512(isa: Any, size: int, who: str) -> list[int]:
    """Clear the AVX-512 / AVX-VNNI / AMX bytes of one ``cpuinfo_isa``; return the indices that were set."""
    if size not in CLEAR_UPTO:
        raise SystemExit(f"xnnpack_avx2: {who}: cpuinfo_isa is {size} bytes, a layout this script does not know")
    if not (isa[AVX] and isa[FMA3] and isa[AVX2]):
        raise SystemExit(f"xnnpack_avx2: {who}: cpuinfo reports no AVX2 + FMA here; nothing to emulate")
    was = [i for i in [AVXVNNI, *range(AVX512F, CLEAR_UPTO[size])] if isa[i]]
    for i in [AVXVNNI, *range(AVX512F, CLEAR_UPTO[size])]:
        isa[i] = 0
    return was


def _maps_base(path: Path) -> int:
    real = str(path.resolve())
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[5] == real and int(parts[2], 16) == 0:
            return int(parts[0].split("-")[0], 16)
    raise SystemExit(f"xnnpack_avx2: {path} is not loaded")


def mask_to_avx2() -> dict[str, list[int]]:
    """Make ExecuTorch's and LiteRT's XNNPACK see an AVX2 + FMA CPU without AVX-512. Must run before either
    loads a model (and before ``executorch`` is imported). Returns the flag bytes each copy had set."""
    if "libexecutorch_backend_xnnpack" in Path("/proc/self/maps").read_text():
        raise SystemExit("xnnpack_avx2: ExecuTorch's XNNPACK is already initialised in this process")
    et_pkg = Path(importlib.util.find_spec("executorch").submodule_search_locations[0])  # type: ignore[union-attr]
    et = ctypes.CDLL(str(et_pkg / "lib" / "libexecutorch_threadpool.so"))
    et.cpuinfo_initialize()
    et_size = _symbol(et_pkg / "lib" / "libexecutorch_threadpool.so", "cpuinfo_isa", dynamic=True)[1]
    out = {"executorch": _clear_avx512((ctypes.c_uint8 * et_size).in_dll(et, "cpuinfo_isa"), et_size, "executorch")}

    import ai_edge_litert.interpreter  # noqa: F401  (loads libpywrap_litert_common.so; no XNNPACK yet)

    lib = Path(importlib.util.find_spec("ai_edge_litert").submodule_search_locations[0]) / "libpywrap_litert_common.so"  # type: ignore[union-attr]
    base = _maps_base(lib)
    init_addr, _ = _symbol(lib, "cpuinfo_initialize")
    isa_addr, isa_size = _symbol(lib, "cpuinfo_isa")
    ctypes.CFUNCTYPE(ctypes.c_bool)(base + init_addr)()
    out["litert"] = _clear_avx512((ctypes.c_uint8 * isa_size).from_address(base + isa_addr), isa_size, "litert")
    return out


def _symbol(path: Path, name: str, dynamic: bool = False) -> tuple[int, int]:
    """(address, size) of ``name`` in ``path``'s symbol table (``nm -S``)."""
    text = subprocess.run(["nm", "-S", *(["-D"] if dynamic else []), str(path)], capture_output=True, text=True,
                          check=True).stdout
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] == name:
            return int(parts[0], 16), int(parts[1], 16)
    raise SystemExit(f"xnnpack_avx2: no symbol {name} in {path}")


# -- the export-side workaround that was tried: convolutions as im2col + linear ---------------------------
def im2col_pte(model_ckpt: Path, out: Path) -> dict[str, Any]:
    """Export the checkpoint's model to ``out`` with every conv2d (+ its batch norm) rewritten as NHWC
    im2col + ``linear`` and the layout permutes between them cancelled. Returns the partition coverage."""
    import torch

    from edgekd.convert.executorch import _lower, keepdim_spatial_means
    from edgekd.models.saved import load_model
    from edgekd.quantization import export_program

    model, _ = load_model(model_ckpt)
    model.eval()
    ex = (torch.zeros(1, *model_input_shape(model_ckpt)),)
    gm = export_program(model, ex, stage="bench").module()
    _conv_as_gemm(gm)
    keepdim_spatial_means(gm)
    buffer, coverage = _lower(export_program(gm, ex, stage="bench"))
    out.write_bytes(buffer)
    with torch.no_grad():
        x = torch.randn(4, *ex[0].shape[1:])
        coverage["max_abs_error_vs_eager"] = float((gm(x[:1]) - model(x[:1])).abs().max())
    return coverage


def model_input_shape(ckpt: Path) -> tuple[int, ...]:
    from edgekd.bundle import Bundle

    return tuple(Bundle.load(ckpt.parent / "bundle").inputs[0].shape[1:])


def _conv_as_gemm(gm: Any) -> None:
    import torch

    aten = torch.ops.aten
    g = gm.graph
    to_nhwc, to_nchw = [0, 2, 3, 1], [0, 3, 1, 2]

    def const(node: Any) -> Any:
        t = gm
        for part in node.target.split("."):
            t = getattr(t, part)
        return t.detach()

    def new_const(value: Any) -> Any:
        name = f"_im2col_{len(list(gm.named_buffers()))}"
        gm.register_buffer(name, value.contiguous())
        return g.get_attr(name)

    def call(target: Any, *args: Any) -> Any:
        return g.call_function(target, tuple(args))

    for bn in list(g.nodes):  # fold inference batch norms into the conv before them
        conv = bn.args[0] if bn.target == aten.batch_norm.default else None
        if conv is None or conv.target != aten.conv2d.default or len(conv.users) != 1 or bn.args[5]:
            continue
        w = const(conv.args[1])
        b = const(conv.args[2]) if len(conv.args) > 2 and conv.args[2] is not None else torch.zeros(w.shape[0])
        gamma, beta, mean, var = (const(a) for a in bn.args[1:5])
        scale = gamma / torch.sqrt(var + bn.args[7])
        with g.inserting_before(conv):
            args = list(conv.args) + [None] * (7 - len(conv.args))
            args[1], args[2] = new_const(w * scale.reshape(-1, 1, 1, 1)), new_const((b - mean) * scale + beta)
            args[3:] = [a if a is not None else d for a, d in zip(args[3:], ([1, 1], [0, 0], [1, 1], 1), strict=True)]
        conv.args = tuple(args)
        bn.replace_all_uses_with(conv)
        g.erase_node(bn)
    for node in [n for n in g.nodes if n.target == aten.conv2d.default]:
        x, w = node.args[0], const(node.args[1])
        bias = node.args[2] if len(node.args) > 2 else None
        (sh, sw), (ph, pw) = (node.args[3] if len(node.args) > 3 else [1, 1]), (node.args[4] if len(node.args) > 4 else [0, 0])
        if (node.args[6] if len(node.args) > 6 else 1) != 1 or isinstance(node.args[4] if len(node.args) > 4 else 0, str):
            continue
        cout, cin, kh, kw = w.shape
        n, _, h, wd = x.meta["val"].shape
        ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
        with g.inserting_before(node):
            t = call(aten.permute.default, x, to_nhwc)
            hp, wp = h + 2 * ph + (-(h + 2 * ph)) % sh, wd + 2 * pw + (-(wd + 2 * pw)) % sw
            if (hp, wp) != (h, wd):
                t = call(aten.constant_pad_nd.default, t, [0, 0, pw, wp - wd - pw, ph, hp - h - ph], 0.0)
            planes = {(0, 0): t}
            if (sh, sw) != (1, 1):  # stride s: the s x s phases of the padded input
                v = call(aten.view.default, t, [n, hp // sh, sh, wp // sw, sw, cin])
                for p in range(sh):
                    vp = call(aten.slice.Tensor, v, 2, p, p + 1)
                    for q in range(sw):
                        planes[p, q] = call(aten.view.default, call(aten.slice.Tensor, vp, 4, q, q + 1),
                                            [n, hp // sh, wp // sw, cin])

            def window(src: Any, dim: int, start: int, size: int, full: int) -> Any:
                return src if (start, size) == (0, full) else call(aten.slice.Tensor, src, dim, start, start + size)

            rows = {}
            patches = []
            for i in range(kh):
                for j in range(kw):
                    key = (i % sh, j % sw, i // sh)
                    if key not in rows:
                        rows[key] = window(planes[i % sh, j % sw], 1, i // sh, ho, hp // sh)
                    patches.append(window(rows[key], 2, j // sw, wo, wp // sw))
            while len(patches) > 1:  # XNNPACK concatenates at most 5 tensors at once
                patches = [call(aten.cat.default, patches[k:k + 5], 3) if len(patches[k:k + 5]) > 1 else patches[k]
                           for k in range(0, len(patches), 5)]
            y = call(aten.linear.default, patches[0], new_const(w.permute(0, 2, 3, 1).reshape(cout, -1)), bias)
            out = call(aten.permute.default, y, to_nchw)
        node.replace_all_uses_with(out)
        g.erase_node(node)

    def is_perm(a: Any, p: list[int]) -> bool:
        return getattr(a, "target", None) == aten.permute.default and list(a.args[1]) == p

    unary = {aten.relu.default: aten.relu.default, aten.relu_.default: aten.relu.default}
    binary = {aten.add.Tensor: aten.add.Tensor, aten.add_.Tensor: aten.add.Tensor}
    changed = True
    while changed:  # move NHWC->NCHW permutes down through relu/add and cancel them against NCHW->NHWC ones
        changed = False
        for node in list(g.nodes):
            src = None
            if node.target in unary and is_perm(node.args[0], to_nchw):
                src = (unary[node.target], (node.args[0].args[0],))
            elif node.target in binary and len(node.args) == 2 and all(is_perm(a, to_nchw) for a in node.args):
                src = (binary[node.target], (node.args[0].args[0], node.args[1].args[0]))
            elif is_perm(node, to_nhwc) and is_perm(node.args[0], to_nchw):
                node.replace_all_uses_with(node.args[0].args[0])
                g.erase_node(node)
                changed = True
                continue
            if src:
                with g.inserting_before(node):
                    moved = call(aten.permute.default, call(src[0], *src[1]), to_nchw)
                node.replace_all_uses_with(moved)
                g.erase_node(node)
                changed = True
        g.eliminate_dead_code()
    for node in [n for n in g.nodes if is_perm(n, to_nchw)]:  # a contiguous NCHW tensor for what follows
        with g.inserting_after(node):
            c = g.call_function(aten.clone.default, (node,), {"memory_format": torch.contiguous_format})
        node.replace_all_uses_with(c, delete_user_cb=lambda u, c=c: u is not c)
    g.lint()
    gm.recompile()


# -- one (isa, threads) measurement, in a child process -------------------------------------------------------
def child(args: argparse.Namespace) -> dict[str, Any]:
    masked = mask_to_avx2() if args.isa == "avx2" else {}
    args.threads = int(args.threads)
    import bare_loop

    runner = bare_loop.load_runner()
    files = [Path(f) for f in args.files]
    calls = {}
    for f in files:
        backend, feed = bare_loop.load(runner, f, args.threads, args.inputs)
        calls[str(f)] = bare_loop.invoke_fn(backend, feed)
    for call in calls.values():
        for _ in range(args.warmup):
            call()
    wall: dict[str, list[float]] = {k: [] for k in calls}
    cpu: dict[str, list[float]] = {k: [] for k in calls}
    ratios: dict[str, list[float]] = {k: [] for k in calls}
    names = list(calls)
    for rnd in range(args.rounds):
        block_p50 = {}
        for name in names if rnd % 2 == 0 else names[::-1]:
            got = []
            for _ in range(args.block):
                t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
                calls[name]()
                cpu[name].append((time.thread_time_ns() - c0) / 1e6)
                got.append((time.perf_counter_ns() - t0) / 1e6)
            wall[name] += got
            block_p50[name] = statistics.median(got)
        for name in names:
            ratios[name].append(block_p50[name] / block_p50[names[0]])
    out: dict[str, Any] = {"isa": args.isa, "threads": args.threads, "masked_flags": masked, "files": {}}
    for name in names:
        out["files"][name] = {
            "wall_p50_ms": statistics.median(wall[name]), "wall_min_ms": min(wall[name]),
            "cpu_p50_ms": statistics.median(cpu[name]) if args.threads == 1 else None,
            "ratio_to_first": statistics.median(ratios[name]), "calls": len(wall[name])}
    if args.threads == 1 and args.etdump:
        from edgekd.convert.executorch import xnnpack_operators

        out["etdump"] = {name: xnnpack_operators(Path(name), runs=20)["p50_ms"] for name in names
                         if name.endswith(".pte") and "fp32" in Path(name).name}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=str(RUNTIMES_BUNDLE))
    ap.add_argument("--isa", default="native,avx2", help="comma list of native, avx2")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--block", type=int, default=15, help="calls per file per round")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--im2col", action="store_true", help="also time the convolutions-as-im2col+linear .pte")
    ap.add_argument("--no-etdump", dest="etdump", action="store_false")
    ap.add_argument("--out", default=str(BENCH / "results" / "xnnpack_avx2.json"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--files", nargs="*", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        os.write(1, (json.dumps(child(args)) + "\n").encode())
        return 0

    files = bundle_files(args.bundle, list(FILES), "xnnpack_avx2")
    paths = [str(p) for p in files.values()]
    extra: dict[str, Any] = {}
    if args.im2col:
        ckpt = next(Path(args.bundle).parent.glob("*.pt"), None)
        if ckpt is None:
            raise SystemExit(f"xnnpack_avx2: --im2col needs the checkpoint beside {args.bundle}")
        target = Path(args.bundle).parent / "model_fp32_im2col.pte"
        extra["im2col"] = im2col_pte(ckpt, target)
        paths.append(str(target))
    import numpy as np

    from edgekd import data as D

    x, _ = D.as_tensors(D.load("mnist5k", seed=0).test)
    rows = []
    load = {"before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "x.npz"
        np.savez(inputs, x=x[:1].numpy())
        for isa in args.isa.split(","):
            for t in (int(v) for v in args.threads.split(",")):
                cmd = [sys.executable, __file__, "--child", "--isa", isa, "--threads", str(t), "--rounds",
                       str(args.rounds), "--block", str(args.block), "--warmup", str(args.warmup),
                       "--inputs", str(inputs), "--files", *paths, *([] if args.etdump else ["--no-etdump"])]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    raise SystemExit(f"xnnpack_avx2: {isa} t{t} failed:\n{res.stderr[-3000:]}")
                rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
                _print(rows[-1])
    load["after"] = os.getloadavg()
    write_results(args.out, "xnnpack_avx2", {"files": {k: str(v) for k, v in files.items()}, "rounds": args.rounds,
                                             "block": args.block, "load_avg": load, "runs": rows, **extra})
    return 0


def _print(row: dict[str, Any]) -> None:
    print(f"\n{row['isa']} ISA path, {row['threads']} thread(s)" +
          (f"; cleared flag bytes {row['masked_flags']}" if row["masked_flags"] else ""))
    print(f"  {'file':36s} {'wall p50':>9s} {'wall min':>9s} {'cpu p50':>8s} {'x first':>8s}")
    for name, v in row["files"].items():
        cpu = f"{v['cpu_p50_ms']:8.3f}" if v["cpu_p50_ms"] is not None else f"{'-':>8s}"
        print(f"  {Path(name).name:36s} {v['wall_p50_ms']:9.3f} {v['wall_min_ms']:9.3f} {cpu} {v['ratio_to_first']:8.2f}")
    for name, ops in (row.get("etdump") or {}).items():
        total = sum(ops.values())
        top = sorted(ops.items(), key=lambda kv: -kv[1])[:5]
        print(f"  ETDump {Path(name).name}: {total:.3f} ms in XNNPACK ops; top: " +
              ", ".join(f"{k} {v:.3f}" for k, v in top))


if __name__ == "__main__":
    raise SystemExit(main())

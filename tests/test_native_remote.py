"""runner=auto|python|native on the remote targets, through the real clients (sshd + paramiko, adb + the adbd
stand-in): the native bundle is pushed once per device (by sha256), an interrupted or altered push is never
used, a device ABI without a native runner and a missing host bundle are clear errors.

Most tests use a bundle made by ``runtimes/cpp/make_bundle.py --arch x86_64`` around a small C++ program
that prints one protocol result line (it stands in for the runner: those tests are about the transport).
The last test builds the real x86_64 bundle (``runtimes/cpp/build.sh``) and checks it against the Python
runner over both transports; the aarch64 bundle is checked in tests/test_native_aarch64.py under qemu.
A bundle is started the way a phone starts it: ``DIR/ld-linux-x86-64.so.2 --library-path DIR DIR/edgekd_runner``.
"""

# ruff: noqa: F811  (pytest fixtures imported from standins.fixtures are re-bound as arguments)
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from standins.fixtures import adb_server, adbd, own_adbd, own_sshd, sshd  # noqa: F401

from edgekd.bench import benchmark
from edgekd.bench.runner_bundle import RunnerBundle, abi_of, find_bundle
from edgekd.bench.targets import RunnerArgs, get_target
from edgekd.bench.targets.remote import RemoteTarget
from edgekd.cli import main
from edgekd.errors import TargetError

ROOT = Path(__file__).resolve().parents[1]
STUB = r"""
#include <cstdio>
#include <string>
int main(int argc, char** argv) {
  int runs = 1;
  for (int i = 1; i + 1 < argc; ++i) if (std::string(argv[i]) == "--runs") runs = std::stoi(argv[i + 1]);
  std::string samples;
  for (int i = 0; i < runs; ++i) samples += (i ? ",1.5" : "1.5");
  std::printf("{\"event\":\"result\",\"runtime\":\"stub\",\"interpreter\":\"native\",\"latency_samples_ms\":[%s],"
              "\"machine\":{\"machine\":\"x86_64\"}}\n", samples.c_str());
  return 0;
}
"""
NO_PYTHON = "/no/such/python3"


@pytest.fixture(scope="module")
def native_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``x86_64/bundle`` (for $EDGEKD_NATIVE_DIR), made by make_bundle.py around the stub."""
    gxx = shutil.which("g++")
    assert gxx, "g++ is needed to build the stub runner (apt-get install g++; scripts/system-deps.sh)"
    d = tmp_path_factory.mktemp("native")
    (d / "stub.cpp").write_text(STUB)
    subprocess.run([gxx, "-O1", "-o", str(d / "stub"), str(d / "stub.cpp")], check=True)
    subprocess.run([sys.executable, str(ROOT / "runtimes/cpp/make_bundle.py"), "--arch", "x86_64", "--runner",
                    str(d / "stub"), "--lib-dir", str(d), "--runtime", "stub=1", "--out",
                    str(d / "x86_64" / "bundle")], check=True, capture_output=True)
    return d


@pytest.fixture
def bundle_env(native_dir: Path, monkeypatch: pytest.MonkeyPatch) -> RunnerBundle:
    monkeypatch.setenv("EDGEKD_NATIVE_DIR", str(native_dir))
    return RunnerBundle.load(native_dir / "x86_64" / "bundle")


@pytest.fixture(params=["ssh", "adb"])
def daemon(request: pytest.FixtureRequest, sshd, adbd):  # noqa: ANN201
    return sshd if request.param == "ssh" else adbd


@pytest.fixture
def puts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every remote path a target copies a file to, in order."""
    seen: list[str] = []
    for cls in {type(get_target("ssh://x@127.0.0.1:1")), type(get_target("adb://127.0.0.1:1"))}:
        orig = cls.put

        def spy(self, local: Path, remote: str, _orig=orig) -> None:  # noqa: ANN001
            seen.append(remote)
            _orig(self, local, remote)

        monkeypatch.setattr(cls, "put", spy)
    yield seen


def test_make_bundle_holds_the_runner_its_libraries_and_glibc(bundle_env: RunnerBundle) -> None:
    b = bundle_env
    assert b.abi == "x86_64" and b.loader == "ld-linux-x86-64.so.2" and b.entry == "edgekd_runner"
    assert {"libc.so.6", "libstdc++.so.6", "libm.so.6", "libgcc_s.so.1", b.loader, b.entry} <= set(b.files)
    sums = (b.path / "SHA256SUMS").read_text()
    assert sums == "".join(f"{h}  {n}\n" for n, h in sorted(b.files.items()))
    out = subprocess.run(b.command(str(b.path)) + ["--runs", "2"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["latency_samples_ms"] == [1.5, 1.5]
    assert b.upload_order()[-2:] == [b.loader, b.entry]  # the runner lands last


def test_a_changed_host_bundle_is_refused(bundle_env: RunnerBundle, tmp_path: Path) -> None:
    copy = tmp_path / "x86_64" / "bundle"
    shutil.copytree(bundle_env.path, copy)
    with open(copy / "libm.so.6", "ab") as f:
        f.write(b"x")
    with pytest.raises(TargetError, match=r"libm.so.6 is missing or does not match bundle.json") as e:
        RunnerBundle.load(copy)
    assert "make native" in str(e.value)


@pytest.mark.parametrize(("machine", "abi"), [("aarch64", "aarch64"), ("arm64", "aarch64"), ("x86_64", "x86_64"),
                                              ("armv7l", None), ("riscv64", None), ("i686", None)])
def test_abi_of(machine: str, abi: str | None) -> None:
    assert abi_of(machine) == abi


def test_auto_runs_the_bundle_where_the_device_has_no_python_and_pushes_it_once(
        tiny_models, daemon, bundle_env: RunnerBundle, puts: list[str], tmp_path: Path) -> None:
    workdir = tmp_path / "dev"
    url = daemon.url(python=NO_PYTHON, workdir=str(workdir))
    [r] = benchmark(tiny_models.tflite, target=url, runs=3, warmup=0, out_dir=tmp_path / "a", progress=False)
    assert r.ok, r.error
    assert r.runner == "native" and r.runtime == "stub" and len(r.latency_samples_ms) == 3
    folder = workdir / "native" / f"x86_64-{bundle_env.sha256[:16]}"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*bundle_env.files, "SHA256SUMS"])
    assert sum("/native/" in p for p in puts) == len(bundle_env.files) + 1
    puts.clear()
    [r2] = benchmark(tiny_models.tflite, target=url, runs=2, warmup=0, out_dir=tmp_path / "b", progress=False)
    assert r2.ok and r2.runner == "native"
    assert not [p for p in puts if "/native/" in p]  # a new target instance checks the sha256s, pushes nothing
    assert [p.name for p in (workdir / "native").iterdir()] == [folder.name]  # no .partial left
    rows = [json.loads(line) for line in (tmp_path / "b" / "results.jsonl").read_text().splitlines()]
    assert rows[-1]["runner"] == "native"


def test_auto_uses_python_where_the_device_has_it_and_runner_forces_one(
        tiny_models, sshd, bundle_env: RunnerBundle, tmp_path: Path) -> None:
    url = sshd.url(workdir=str(tmp_path / "dev"))
    [py] = benchmark(tiny_models.tflite, target=url, runs=2, warmup=0, out_dir=tmp_path / "a", progress=False)
    assert py.ok and py.runner == "python" and py.runtime != "stub"
    [nat] = benchmark(tiny_models.tflite, target=url, runs=2, warmup=0, out_dir=tmp_path / "b", progress=False,
                      runner="native")
    assert nat.ok and nat.runner == "native" and nat.runtime == "stub"
    [url_nat] = benchmark(tiny_models.tflite, target=sshd.url(workdir=str(tmp_path / "dev"), runner="native"),
                          runs=1, warmup=0, out_dir=tmp_path / "c", progress=False)
    assert url_nat.runner == "native"
    [forced] = benchmark(tiny_models.tflite, target=sshd.url(python=NO_PYTHON), runs=1, warmup=0,
                         out_dir=tmp_path / "d", progress=False, runner="python")
    assert not forced.ok and forced.error_type == "target" and "install Python 3.10" in forced.error


def test_auto_picks_per_format(sshd, tmp_path: Path) -> None:
    t = get_target(sshd.url())
    t.python_probe()
    probe, _ = t._python
    t._python = ({**probe, "modules": ["numpy", "ai_edge_litert"]}, None)  # a Pi with LiteRT, no ExecuTorch/torch
    assert t.choose_runner(Path("m.tflite"), "auto") == "python"
    assert t.choose_runner(Path("m.pte"), "auto") == "native"
    assert t.choose_runner(Path("m.tflite"), "native") == "native"


def test_an_interrupted_push_is_never_used_and_is_pushed_again(
        tiny_models, daemon, bundle_env: RunnerBundle, puts: list[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    workdir = tmp_path / "dev"
    url = daemon.url(python=NO_PYTHON, workdir=str(workdir))
    cls = type(get_target(url))
    spy = cls.put

    def dies_midway(self, local: Path, remote: str) -> None:  # noqa: ANN001
        if "/native/" in remote and sum("/native/" in p for p in puts) >= 3:
            raise TargetError("ssh connection dropped during upload (test)", stage="bench/test")
        spy(self, local, remote)

    monkeypatch.setattr(cls, "put", dies_midway)
    [bad] = benchmark(tiny_models.tflite, target=url, runs=1, warmup=0, out_dir=tmp_path / "run", progress=False)
    assert not bad.ok and bad.error_type == "target" and "dropped during upload" in bad.error
    folder = workdir / "native" / f"x86_64-{bundle_env.sha256[:16]}"
    assert not folder.exists() and (workdir / "native" / (folder.name + ".partial")).is_dir()
    monkeypatch.setattr(cls, "put", spy)
    [ok] = benchmark(tiny_models.tflite, target=url, runs=1, warmup=0, out_dir=tmp_path / "run", progress=False)
    assert ok.ok and ok.runner == "native"
    rows = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    assert len(rows) == 2 and json.loads(rows[0])["error"]  # the earlier (failed) row is kept
    # A bundle altered on the device (a library cut short) is detected by its sha256 and replaced.
    (folder / "libc.so.6").write_bytes((folder / "libc.so.6").read_bytes()[:1000])
    puts.clear()
    [again] = benchmark(tiny_models.tflite, target=url, runs=1, warmup=0, out_dir=tmp_path / "r3", progress=False)
    assert again.ok and again.runner == "native"
    assert f"{folder}.partial/libc.so.6" in puts
    assert RunnerBundle.load(bundle_env.path).files["libc.so.6"] == _sha(folder / "libc.so.6")


def _sha(path: Path) -> str:
    from edgekd.bundle import sha256_of

    return sha256_of(path)


def test_an_abi_without_a_native_runner_is_a_clear_error(tiny_models, own_adbd, bundle_env, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    uname = own_adbd.shim / "uname"
    uname.write_text("#!/bin/sh\necho armv7l\n")
    uname.chmod(0o755)
    [r] = benchmark(tiny_models.tflite, target=own_adbd.url(python=NO_PYTHON), runs=1, warmup=0,
                    out_dir=tmp_path, progress=False)
    assert not r.ok and r.error_type == "target"
    assert "'armv7l'" in r.error and "aarch64 and x86_64 only" in r.error and "64-bit OS" in r.error
    code = main(["bench", str(tiny_models.tflite), "--target", own_adbd.url(python=NO_PYTHON), "--runs", "1",
                 "--warmup", "0", "--out", str(tmp_path / "cli"), "--no-progress"])
    assert code == 1 and "'armv7l'" in capsys.readouterr().err


def test_a_missing_host_bundle_names_the_folder_and_the_make_target(
        tiny_models, sshd, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGEKD_NATIVE_DIR", str(tmp_path / "empty"))
    [r] = benchmark(tiny_models.tflite, target=sshd.url(python=NO_PYTHON), runs=1, warmup=0, out_dir=tmp_path,
                    progress=False)
    assert not r.ok and r.error_type == "target"
    assert f"no native runner bundle for x86_64 at {tmp_path / 'empty' / 'x86_64' / 'bundle'}" in r.error
    assert "make native" in r.error and "cannot run the Python runner" in r.error


def test_a_device_without_sha256sum_is_refused(sshd, bundle_env: RunnerBundle, tmp_path: Path) -> None:
    t = get_target(sshd.url(python=NO_PYTHON))
    assert isinstance(t, RemoteTarget)
    real = t.exec
    t.exec = lambda cmd, timeout_s: real(cmd.replace("command -v", "false"), timeout_s)  # type: ignore[method-assign]
    with pytest.raises(TargetError, match="no sha256sum"):
        t.run_runner(tmp_path / "m.tflite", None, RunnerArgs(runs=1, warmup=0), 30)


@pytest.fixture(scope="module")
def real_bundle() -> RunnerBundle:
    """The real x86_64 bundle: build.sh builds the runner (incrementally) and make_bundle.py bundles it."""
    assert shutil.which("cmake") and shutil.which("g++"), "needs cmake and g++ (apt-get install cmake g++)"
    p = subprocess.run(["bash", str(ROOT / "runtimes/cpp/build.sh"), "--arch", "x86_64", "--python", sys.executable],
                       capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, f"build.sh failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    return find_bundle("x86_64")


def test_the_real_bundle_over_both_transports_agrees_with_the_python_runner(
        tiny_models, daemon, real_bundle: RunnerBundle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EDGEKD_NATIVE_DIR", raising=False)
    url = daemon.url(python=NO_PYTHON, workdir=str(tmp_path / "dev"))
    for i, model in enumerate((tiny_models.pte, tiny_models.tflite, tiny_models.tflite_int8)):
        kw = dict(runs=2, warmup=0, threads=1, eval_data=tiny_models.eval, progress=False)
        [nat] = benchmark(model, target=url, out_dir=tmp_path / f"n{i}", **kw)
        [py] = benchmark(model, target="local", runner="python", out_dir=tmp_path / f"p{i}", **kw)
        assert nat.ok and py.ok, (nat.error, py.error)
        assert nat.runner == "native" and py.runner == "python" and nat.interpreter.startswith("edgekd_runner (native")
        assert nat.accuracy == py.accuracy and nat.eval_samples == py.eval_samples == 60
        assert (nat.input["shape"], nat.input["dtype"]) == (py.input["shape"], py.input["dtype"])
    assert [p.name for p in (tmp_path / "dev" / "native").iterdir()] == [f"x86_64-{real_bundle.sha256[:16]}"]


def test_profile_over_both_transports_is_pulled_back_and_reported(
        tiny_models, daemon, real_bundle: RunnerBundle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--profile on a device: the native runner writes its dump there, the harness pulls it back, parses it on
    the host (one table per file: a .pte and a .tflite of the same stem each keep theirs) and `edgekd report`
    shows it."""
    from test_harness import _bundle

    monkeypatch.delenv("EDGEKD_NATIVE_DIR", raising=False)
    root = _bundle(tmp_path / "bundle", {
        "model_fp32.pte": (tiny_models.pte.read_bytes(), "pte", "fp32", "executorch"),
        "model_fp32.tflite": (tiny_models.tflite.read_bytes(), "tflite", "fp32", "litert-torch")}).root
    run = tmp_path / "run"
    rows = benchmark(root, target=daemon.url(python=NO_PYTHON, workdir=str(tmp_path / "dev")), profile=True,
                     runs=2, warmup=0, threads=1, out_dir=run, progress=False)
    assert [(r.ok, r.runner, r.profile_error) for r in rows] == [(True, "native", None)] * 2, [r.error for r in rows]
    tables = {r.format: json.loads((run / r.profile).read_text()) for r in rows}
    assert (tables["pte"]["source"], tables["tflite"]["source"]) == ("etdump", "litert-profiler")
    assert all(t["total_ms"] > 0 and t["ops"] for t in tables.values())
    assert not list((tmp_path / "dev").glob("run-*"))  # the device folder is gone, the dumps came back
    assert main(["report", str(run)]) == 0
    page = (run / "report" / "index.html").read_text()
    assert page.count("Convolution (NHWC, F32) IGEMM") >= 2  # both files' XNNPACK operators, each in its table


def test_inputs_through_the_cli_on_a_device_with_the_native_runner(
        tiny_models, daemon, real_bundle: RunnerBundle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`edgekd bench --inputs X.npz` reaches the native runner on the device: float64 converted and said, NaN fed
    and said, a wrong shape the runner's clear error."""
    import numpy as np

    monkeypatch.delenv("EDGEKD_NATIVE_DIR", raising=False)
    with np.load(tiny_models.inputs) as f:
        x = f["x"].astype(np.float64)
    x[0, 0, 0, 0] = np.nan
    good, small = tmp_path / "x64.npz", tmp_path / "small.npz"
    np.savez(good, x=x)
    np.savez(small, x=np.zeros((1, 1, 4, 4), np.float32))
    url = daemon.url(python=NO_PYTHON, workdir=str(tmp_path / "dev"))
    base = ["bench", str(tiny_models.tflite), "--target", url, "--runs", "2", "--warmup", "0", "--threads", "1",
            "--no-progress"]
    assert main([*base, "--inputs", str(good), "--out", str(tmp_path / "a")]) == 0
    [row] = [json.loads(line) for line in (tmp_path / "a" / "results.jsonl").read_text().splitlines()]
    assert row["runner"] == "native" and row["input"]["given_dtype"] == "float64" and row["input"]["nan"] == 1
    assert row["notes"][:2] == ["input x is float64; converted to float32, the model's input dtype",
                                "input x holds 1 NaN of 64 values; fed as they are"]
    err = capsys.readouterr().err
    assert f"note: tiny.tflite [{row['key']}]: input x is float64; converted to float32" in err
    assert f"note: tiny.tflite [{row['key']}]: the output holds 10 NaN of 10 values" in err
    assert main([*base, "--inputs", str(small), "--out", str(tmp_path / "b")]) == 1
    [row] = [json.loads(line) for line in (tmp_path / "b" / "results.jsonl").read_text().splitlines()]
    assert row["error_type"] == "input_mismatch" and row["exit_code"] == 4 and "[1, 1, 4, 4]" in row["error"]


SECCOMP_LAUNCHER = r"""
// Runs argv[1..] under a seccomp filter that kills the process on the rseq system call (glibc >= 2.35 makes it
// in every thread it starts), as a device's seccomp policy that does not allow rseq would.
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char** argv) {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_rseq, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof f / sizeof f[0], f};
  if (argc < 2 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
    perror("seccomp launcher");
    return 99;
  }
  execv(argv[1], argv + 1);
  perror("execv");
  return 98;
}
"""


@pytest.fixture(scope="module")
def seccomp_launcher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    assert gcc, "gcc is needed to build the seccomp launcher (apt-get install gcc)"
    d = tmp_path_factory.mktemp("seccomp")
    (d / "launcher.c").write_text(SECCOMP_LAUNCHER)
    subprocess.run([gcc, "-O1", "-o", str(d / "launcher"), str(d / "launcher.c")], check=True)
    return d / "launcher"


def test_the_bundle_survives_a_seccomp_filter_that_forbids_rseq_only_with_the_tunable(
        tiny_models, real_bundle: RunnerBundle, seccomp_launcher: Path) -> None:
    """The real bundle (glibc 2.36) under a kill-on-rseq filter: without GLIBC_TUNABLES=glibc.pthread.rseq=0 the
    kernel kills it with SIGSYS before main; with it, it runs and measures (the thread pool starts threads too)."""
    from edgekd.bench.runner_bundle import RSEQ_OFF

    cmd = [str(seccomp_launcher), *real_bundle.command(str(real_bundle.path)), "--model", str(tiny_models.tflite),
           "--runs", "2", "--warmup", "0", "--threads", "2"]
    env = {k: v for k, v in __import__("os").environ.items() if k != "GLIBC_TUNABLES"}
    dead = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert dead.returncode == -31 and not dead.stdout, (dead.returncode, dead.stdout, dead.stderr)  # SIGSYS
    alive = subprocess.run(cmd, capture_output=True, text=True, env={**env, "GLIBC_TUNABLES": RSEQ_OFF}, timeout=60)
    assert alive.returncode == 0, alive.stderr[-1000:]
    assert json.loads(alive.stdout)["event"] == "result"


def test_on_a_device_with_such_a_filter_the_harness_sets_the_tunable_and_names_sigsys_otherwise(
        tiny_models, daemon, real_bundle: RunnerBundle, seccomp_launcher: Path, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """A device whose processes run under the kill-on-rseq filter (the runner path is a wrapper that starts the
    bundle through the launcher): the harness's launch survives; a launch without the tunable dies by SIGSYS, and
    the row names the cause and the fix."""
    from edgekd.bench.targets import remote

    monkeypatch.delenv("EDGEKD_NATIVE_DIR", raising=False)
    wrapper = tmp_path / "seccomp_runner.sh"
    wrapper.write_text("#!/bin/sh\nexec " + " ".join(map(str, [seccomp_launcher, *real_bundle.command(
        str(real_bundle.path))])) + ' "$@"\n')
    wrapper.chmod(0o755)
    url = daemon.url(python=NO_PYTHON, workdir=str(tmp_path / "dev"), runner=str(wrapper))
    [ok] = benchmark(tiny_models.tflite, target=url, runs=2, warmup=0, threads=2, out_dir=tmp_path / "a",
                     progress=False)
    assert ok.ok and ok.runner == "native", ok.error
    monkeypatch.setattr(remote, "NATIVE_ENV", "EDGEKD_TEST_NO_TUNABLE=1")  # a launch without it
    [dead] = benchmark(tiny_models.tflite, target=url, runs=2, warmup=0, threads=2, out_dir=tmp_path / "b",
                       progress=False)
    assert not dead.ok and dead.error_type == "seccomp" and dead.exit_code == -31, dead.error
    assert "SIGSYS" in dead.error and "seccomp filter" in dead.error and "rseq" in dead.error
    assert "GLIBC_TUNABLES=glibc.pthread.rseq=0" in dead.error and "fix: run the Python runner" in dead.error

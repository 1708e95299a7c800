"""The compile cache (llm_runtime.compile_cache, `llm-runtime serve`): keyed by what invalidates
compiled files, published so that no reader sees half a file, and never in the way of a start.

vLLM is replaced here by small programs that "compile" (write files where vLLM and torch are told
to keep their caches) and serve /health; the real vLLM (CPU build) keeps its compiled files this way
on the plane's real node (e2e/test_serving.py measures the restarts).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_runtime import compile_cache as cc
from llm_runtime.compile_cache import CompileCache
from llm_runtime.contract import COMPILE_CACHE_PATTERN
from llm_runtime.serve import health_url

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"
XEON = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz\nflags\t\t: fpu sse avx2 avx512f\n"


# ------------------------------------------------------------------ what invalidates compiled files


def test_the_device_kind_tells_cpus_and_gpus_apart():
    xeon = cc.cpu_kind(XEON, "x86_64")
    assert xeon.startswith("cpu-x86-64-intel-r-xeon-r-platinum-8375c-cpu-2-90ghz-")
    assert cc.cpu_kind(XEON, "x86_64") == xeon  # stable
    # The same model with fewer flags exposed (a VM), or another model: other directories.
    assert cc.cpu_kind(XEON.replace(" avx512f", ""), "x86_64") != xeon
    assert cc.cpu_kind(XEON.replace("8375C", "8480+"), "x86_64") != xeon
    assert cc.gpu_kind([("NVIDIA H100 80GB HBM3", "90")]) == "cuda-sm90-nvidia-h100-80gb-hbm3"
    assert cc.gpu_kind([("NVIDIA A100-SXM4-80GB", "80"), ("NVIDIA H100 80GB HBM3", "90")]) == \
        "cuda-sm80-nvidia-a100-sxm4-80gb+cuda-sm90-nvidia-h100-80gb-hbm3"
    # No GPU identified: nothing is shared (kernels built for one GPU fail on another).
    assert cc.device_kind("GPU", gpus=lambda: []) is None
    assert cc.device_kind("CPU", read_cpuinfo=lambda: XEON).startswith("cpu-")


def test_the_key_directory_is_version_device_and_model(tmp_path):
    assert cc.key_dir("/compile-cache", "0.33.0", "cuda-sm90-h100", "modelscope/Qwen/Qwen3-8B/master") == \
        "/compile-cache/0.33.0/cuda-sm90-h100/modelscope/Qwen/Qwen3-8B/master"


# ------------------------------------------------------------------ one start, then the next


def fake_compile(env: dict[str, str], files: dict[str, bytes]) -> None:
    """What vLLM and Inductor do at start-up: read what is there, write what is missing."""
    for relative, content in files.items():
        variable, _, name = relative.partition(":")
        path = Path(env[variable]) / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)


ARTIFACTS = {"VLLM_CACHE_ROOT:torch_compile_cache/0a1b2c/rank_0_0/model": b"graph" * 100,
             "TORCHINDUCTOR_CACHE_DIR:fxgraph/ab/entry": b"fx" * 100,
             "TORCHINDUCTOR_CACHE_DIR:3b/kernel.so": b"\x7fELF" * 100}


@pytest.fixture
def on_this_cpu(monkeypatch):
    monkeypatch.setattr(cc, "vllm_version", lambda: "0.32.0+cpu")
    monkeypatch.setattr(cc, "device_kind", lambda device: "cpu-test")


def start(root: Path, private: Path, files=ARTIFACTS, environ=None) -> tuple[CompileCache, str, dict[str, str]]:
    cache = CompileCache(root=str(root), model_key="modelscope/Qwen/Qwen2.5-0.5B-Instruct/master",
                         private=str(private), device="CPU")
    env = cache.prepare(environ or {"HOME": "/tmp"})
    fake_compile(env, files)
    return cache, cache.finish(), env


def test_a_second_start_reuses_what_the_first_compiled(tmp_path, on_this_cpu):
    root = tmp_path / "volume" / "compile"
    _, first, env = start(root, tmp_path / "pod-a")
    assert COMPILE_CACHE_PATTERN.match(first)[1] == "Compiled"
    key = root / "0.32.0+cpu" / "cpu-test" / "modelscope/Qwen/Qwen2.5-0.5B-Instruct/master"
    assert (key / "vllm/torch_compile_cache/0a1b2c/rank_0_0/model").read_bytes() == b"graph" * 100
    assert (key / "inductor/3b/kernel.so").exists() and Path(str(key) + cc.USED_SUFFIX).exists()
    assert env["VLLM_CACHE_ROOT"] == str(tmp_path / "pod-a" / "vllm")  # vLLM itself only ever writes its pod's copy

    _, second, env = start(root, tmp_path / "pod-b")
    assert COMPILE_CACHE_PATTERN.match(second)[1] == "Reused", second
    assert "3 compiled files" in second
    assert (Path(env["TORCHINDUCTOR_CACHE_DIR"]) / "3b/kernel.so").exists()

    # A new compile range, say: only the new file is compiled and stored.
    _, third, _ = start(root, tmp_path / "pod-c", {**ARTIFACTS, "TRITON_CACHE_DIR:k/new.cubin": b"cubin"})
    assert COMPILE_CACHE_PATTERN.match(third)[1] == "Compiled" and third.split(": ", 1)[1].startswith("1 files")
    assert (key / "triton/k/new.cubin").read_bytes() == b"cubin"


def test_a_start_begins_from_a_clean_private_copy(tmp_path, on_this_cpu):
    """A crash in this pod may have cut a file short: the next start never reads it."""
    root, private = tmp_path / "compile", tmp_path / "pod"
    (private / "vllm").mkdir(parents=True)
    (private / "vllm" / "vllm_compile_cache.py").write_text("{ 'cut short")
    cache, _, env = start(root, private, files={})
    assert not (Path(env["VLLM_CACHE_ROOT"]) / "vllm_compile_cache.py").exists()


def test_variables_the_spec_sets_are_left_as_they_are(tmp_path, on_this_cpu):
    _, _, env = start(tmp_path / "compile", tmp_path / "pod", environ={"TRITON_CACHE_DIR": "/my/triton"})
    assert env["TRITON_CACHE_DIR"] == "/my/triton" and env["VLLM_CACHE_ROOT"].startswith(str(tmp_path / "pod"))


def test_nothing_compiled_is_said_as_such(tmp_path, on_this_cpu):
    _, line, _ = start(tmp_path / "compile", tmp_path / "pod", files={})
    assert COMPILE_CACHE_PATTERN.match(line)[1] == "NothingCompiled"


def test_an_unwritable_volume_costs_the_files_never_the_start(tmp_path, on_this_cpu):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    _, line, env = start(blocker / "compile", tmp_path / "pod")
    result, detail = COMPILE_CACHE_PATTERN.match(line).groups()
    assert result == "NotStored" and "is not writable: Not a directory" in detail, detail
    assert (Path(env["VLLM_CACHE_ROOT"]) / "torch_compile_cache/0a1b2c/rank_0_0/model").exists()


def test_a_nearly_full_volume_is_left_to_the_weights(tmp_path, on_this_cpu, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(cc.shutil, "disk_usage", lambda p: real(p)._replace(free=10 << 20))
    _, line, _ = start(tmp_path / "compile", tmp_path / "pod")
    result, detail = COMPILE_CACHE_PATTERN.match(line).groups()
    assert result == "NotStored" and "only 10.0 MiB free" in detail


def _in_ci() -> bool:
    return os.environ.get("CI") == "true"


def _needs_root() -> None:
    if os.geteuid() != 0:
        if _in_ci():
            pytest.fail("CI=true: this test mounts a small filesystem and needs root", pytrace=False)
        pytest.skip("mounts a small filesystem: run as root (as CI does) to enable it")


SMALL_VOLUME = f"""
import os, sys
sys.path.insert(0, {str(RUNTIME)!r})
from llm_runtime import compile_cache as cc
cc.vllm_version = lambda: "0.33.0"
cc.device_kind = lambda device: "cpu-test"
cc.MIN_FREE_BYTES = 0
cache = cc.CompileCache(root=sys.argv[1], model_key="hf/org/model/main", private=sys.argv[2], device="CPU")
env = cache.prepare({{}})
os.makedirs(os.path.join(env["TORCHINDUCTOR_CACHE_DIR"], "3b"))
for n in range(3):
    with open(os.path.join(env["TORCHINDUCTOR_CACHE_DIR"], "3b", f"kernel{{n}}.so"), "wb") as f:
        f.write(os.urandom(1 << 20))
print(cache.finish())
"""


@pytest.mark.parametrize("volume", ["full", "read-only"])
def test_a_full_or_read_only_volume_on_a_real_filesystem(tmp_path, volume):
    """A 2 MiB tmpfs that 3 MiB of compiled files do not fit, or one mounted read-only: the start
    says why, keeps what it compiled, and leaves no part of a file behind."""
    _needs_root()
    mount = tmp_path / "volume"
    mount.mkdir()
    remount = "mount -o remount,ro \"$1\"" if volume == "read-only" else "true"
    script = tmp_path / "small_volume.py"
    script.write_text(SMALL_VOLUME)
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-ec",
         f'mount -t tmpfs -o size=2m tmpfs "$1"; mkdir "$1/compile"; {remount}; '
         f'"$2" "$3" "$1/compile" "$4"; echo "left: $(find "$1" -name "*.tmp" | wc -l)"',
         "sh", str(mount), sys.executable, str(script), str(tmp_path / "pod")],
        capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    result, detail = COMPILE_CACHE_PATTERN.search(out.stdout).groups()
    assert result == "NotStored", out.stdout
    assert ("No space left on device" if volume == "full" else "Read-only file system") in detail, detail
    assert "left: 0" in out.stdout  # no half-published file stays on the volume
    assert len(list((tmp_path / "pod" / "inductor" / "3b").iterdir())) == 3  # this start keeps its own


# ------------------------------------------------------------------ several pods at once


def _content(name: str) -> bytes:
    """A file whose every byte depends on its name, big enough that a write takes many syscalls."""
    seed = hashlib.sha256(name.encode()).digest()
    return seed * ((1 << 20) // len(seed))


def _one_pod(root: str, private: str, names: list[str], queue) -> None:
    cc.vllm_version = lambda: "0.33.0"
    cc.device_kind = lambda device: "cuda-sm90-test"
    cache = CompileCache(root=root, model_key="hf/org/model/main", private=private, device="GPU")
    env = cache.prepare({})
    fake_compile(env, {f"TORCHINDUCTOR_CACHE_DIR:{name}": _content(name) for name in names})
    queue.put(cache.finish())


KEY = ("0.33.0", "cuda-sm90-test", "hf/org/model/main")


def _reader(root: str, stop, queue) -> None:
    """Copies the key directory again and again, as starting pods do, and checks every file it got."""
    seen, bad = 0, []
    while not stop.is_set():
        private = f"{root}.reader"
        shutil.rmtree(private, ignore_errors=True)
        cc.copy_in(cc.key_dir(root, *KEY), private)
        for parent, _dirs, files in os.walk(private):
            for name in files:
                seen += 1
                if Path(parent, name).read_bytes() != _content(name):
                    bad.append(name)
    queue.put((seen, bad))


def test_pods_starting_at_once_never_read_half_a_file(tmp_path):
    """Eight pods compile overlapping sets of files at once and publish them while a reader copies
    the cache without pause: every file it ever copied is whole, and the cache ends complete."""
    root = str(tmp_path / "compile")
    names = [f"kernel{n}.so" for n in range(12)]
    context = multiprocessing.get_context("fork")
    results, reads, stop = context.Queue(), context.Queue(), context.Event()
    reader = context.Process(target=_reader, args=(root, stop, reads))
    reader.start()
    pods = [context.Process(target=_one_pod, args=(root, str(tmp_path / f"pod-{n}"), names[n % 5:n % 5 + 8], results))
            for n in range(8)]
    for pod in pods:
        pod.start()
    lines = [results.get(timeout=120) for _ in pods]
    for pod in pods:
        pod.join(30)
    time.sleep(0.2)
    stop.set()
    seen, bad = reads.get(timeout=60)
    reader.join(30)
    assert bad == [] and seen > 0, (seen, bad)
    assert all(COMPILE_CACHE_PATTERN.match(line)[1] in ("Compiled", "Reused") for line in lines), lines
    key = Path(cc.key_dir(root, *KEY)) / "inductor"
    assert sorted(p.name for p in key.iterdir()) == sorted(names)
    assert all((key / name).read_bytes() == _content(name) for name in names)


# ------------------------------------------------------------------ llm-runtime serve


def test_the_health_address_follows_the_serve_arguments():
    assert health_url(["/models/x", "--port", "8000"]) == "http://127.0.0.1:8000/health"
    assert health_url(["/models/x", "--port=9001", "--host", "0.0.0.0"]) == "http://127.0.0.1:9001/health"
    assert health_url(["/models/x", "--host=10.0.0.5"]) == "http://10.0.0.5:8000/health"


# Stands in for `vllm serve`: compiles (writes a file where Inductor keeps its cache, unless it is
# there), then answers /health on --port until SIGTERM, when it exits with 0 ("graceful").
FAKE_VLLM = f"""#!{sys.executable}
import http.server, os, signal, sys, threading
args = sys.argv[1:]
assert args[0] == "serve", args
port = int(args[args.index("--port") + 1])
kernel = os.path.join(os.environ["TORCHINDUCTOR_CACHE_DIR"], "3b", "kernel.so")
if not os.path.exists(kernel):
    os.makedirs(os.path.dirname(kernel), exist_ok=True)
    open(kernel, "wb").write(b"compiled")
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *a):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Health)
signal.signal(signal.SIGTERM, lambda *a: (server.shutdown(), sys.exit(0)))
threading.Thread(target=server.serve_forever, daemon=True).start()
print("fake vLLM serving", flush=True)
signal.pause()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(tmp_path: Path, pod: str) -> tuple[subprocess.Popen, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "vllm"
    fake.write_text(FAKE_VLLM)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / f"{pod}.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(RUNTIME)}
    process = subprocess.Popen(
        [sys.executable, "-m", "llm_runtime.cli", "serve", f"--compile-cache={tmp_path / 'compile'}",
         "--model-key=hf/org/model/main", "--device=CPU", f"--work-dir={tmp_path / pod}", "--",
         "/models/hf/org/model/main", "--port", str(_free_port())],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return process, log


def _line(log: Path, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = COMPILE_CACHE_PATTERN.search(log.read_text())
        if found:
            return found[1]
        time.sleep(0.1)
    raise AssertionError(f"no compile cache line in {log.read_text()!r}")


def test_serve_stores_what_vllm_compiled_once_it_is_healthy_and_passes_signals_on(tmp_path):
    first, log = _serve(tmp_path, "pod-a")
    try:
        assert _line(log) == "Compiled"
        assert "fake vLLM serving" in log.read_text()  # vLLM's own output reaches the container's log
        first.send_signal(signal.SIGTERM)  # what the kubelet sends
        assert first.wait(30) == 0  # vLLM's exit code
    finally:
        first.kill()
    second, log = _serve(tmp_path, "pod-b")
    try:
        assert _line(log) == "Reused"
        second.send_signal(signal.SIGINT)
        assert second.wait(30) == 128 + signal.SIGINT  # the fake dies by the signal it does not handle
    finally:
        second.kill()


def test_the_batch_runner_keeps_compiled_files_and_reports_them(tmp_path, on_this_cpu):
    from llm_runtime.batch import run

    fake = tmp_path / "vllm"
    fake.write_text(f"#!{sys.executable}\nimport os, sys\nargs = sys.argv[1:]\n"
                    "k = os.path.join(os.environ['TORCHINDUCTOR_CACHE_DIR'], 'kernel.so')\n"
                    "os.path.exists(k) or open(k, 'wb').write(b'compiled')\n"
                    "open(args[args.index('-o') + 1], 'w').close()\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    requests = tmp_path / "in.jsonl"
    requests.write_text("not json\n")  # nothing for vLLM: it does not run, nothing is compiled
    termination = tmp_path / "termination"
    cache = CompileCache(root=str(tmp_path / "compile"), model_key="hf/o/m/main", private=str(tmp_path / "p"),
                         device="CPU")
    assert run(str(requests), str(tmp_path / "out.jsonl"), [], str(termination), 4000, vllm=[str(fake)],
               compile_cache=cache) == 0
    assert "compileCache" not in json.loads(termination.read_text())
    requests.write_text(json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}) + "\n")
    fake.write_text(fake.read_text().replace("open(args[args.index('-o') + 1], 'w').close()",
                                             "open(args[args.index('-o') + 1], 'w').write('{\"custom_id\": \"a\"}\\n')"))
    assert run(str(requests), str(tmp_path / "out.jsonl"), [], str(termination), 4000, vllm=[str(fake)],
               compile_cache=cache) == 0
    report = json.loads(termination.read_text())
    assert COMPILE_CACHE_PATTERN.match(report["compileCache"])[1] == "Compiled"
    assert (tmp_path / "compile/0.32.0+cpu/cpu-test/hf/o/m/main/inductor/kernel.so").read_bytes() == b"compiled"

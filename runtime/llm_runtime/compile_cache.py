"""The compile cache: what vLLM compiles at start-up (torch.compile graphs, Inductor's C++ and
Triton kernels) kept on the model volume, so that a restart or another replica skips compiling.

Layout, below `<cache volume>/compile/` (the engine mounts that directory, and only it, writable):

    <vLLM version>/<device kind>/<model key>/      one key directory
        vllm/        VLLM_CACHE_ROOT: vLLM's own cache, keyed below by vLLM's own hash
                     (torch_compile_cache/torch_aot_compile/<hash>/, torch_compile_cache/<hash>/, ...)
        inductor/    TORCHINDUCTOR_CACHE_DIR, where vLLM leaves it (in AOT mode it uses one per hash)
        triton/      TRITON_CACHE_DIR
    <vLLM version>/<device kind>/<model key>.used  stamped by every start that uses the key directory;
                                                    `llm-runtime gc` ages key directories by it

The version and the device kind are read where the engine runs, never taken from the spec: two
pods of different vLLM versions or on different devices (another GPU model, another CPU: Inductor
compiles for the CPU it runs on) never read each other's files. The model key is the model's
directory below the weights cache (`modelscope/Qwen/Qwen3-8B/master`).

Safe for any number of pods starting at once, on any volume. vLLM and torch write some files in
place (vLLM's `vllm_compile_cache.py` index, Inductor's C++ objects under a flock that NFS may not
share between nodes), so no engine ever writes into the volume: each start copies the key directory
into a private one on the pod's own disk, vLLM compiles there, and once the engine is healthy
(vLLM compiles everything before it serves) every file it created or changed is published: written
under a temporary name beside its place, then renamed. Readers see whole files or none; two pods
that compiled the same thing publish equivalent files and the last rename wins. A volume that is
read-only, full or refuses the writes costs this start's files, never the start: it says why in a
log line and serves.

Each start logs one line saying what it did (`contract.COMPILE_CACHE_LINE`), which the operator reads into status.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata

from .contract import COMPILE_CACHE_LINE, CompileResult
from .download import touch, unique_id

log = logging.getLogger("llm_runtime.compile_cache")

USED_SUFFIX = ".used"
# A file being published: `.<name>.llmops-<id>.tmp` beside its place. Never copied into a start, and
# removed by `llm-runtime gc` once old.
PUBLISHING_PATTERN = re.compile(r"^\..+\.llmops-[0-9a-f]{12}\.tmp$")
# Where vLLM and torch keep their locks and temporary files while they write: never artifacts.
_NOT_ARTIFACTS = re.compile(r"(^|/)locks(/|$)|\.lock$|\.tmp$|(^|/)tmp[a-z0-9_]{6,}$")
# Below this much free space the volume is left alone: compiled files would fill what downloads need.
MIN_FREE_BYTES = 1 << 30

# The variables vLLM and torch read their cache directories from, by subdirectory of a key directory.
CACHE_VARIABLES = {"VLLM_CACHE_ROOT": "vllm", "TORCHINDUCTOR_CACHE_DIR": "inductor", "TRITON_CACHE_DIR": "triton"}


# ------------------------------------------------------------------ what invalidates compiled files


def vllm_version() -> str:
    """The version of the vLLM that will run: compiled files of another release are never read."""
    try:
        return metadata.version("vllm")
    except metadata.PackageNotFoundError:
        return "unknown"


def _slug(text: str, limit: int = 48) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "unknown"


def cpu_kind(cpuinfo: str, machine: str) -> str:
    """`cpu-<arch>-<model>-<hash of the instruction set flags>`: Inductor compiles its C++ kernels
    for the CPU it runs on (-march=native), so another CPU model, or the same model with other flags
    exposed (a VM), gets a directory of its own."""
    model = flags = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key in ("model name", "cpu model", "hardware") and not model:
            model = value
        elif key in ("flags", "features") and not flags:
            flags = " ".join(sorted(value.split()))
    digest = hashlib.sha256(f"{machine}\n{model}\n{flags}".encode()).hexdigest()[:8]
    return f"cpu-{_slug(machine, 16)}-{_slug(model)}-{digest}"


def _nvml_gpus() -> list[tuple[str, str]]:
    """(name, compute capability) of every GPU this container sees, from NVML (vLLM's own dependency
    nvidia-ml-py; light, no CUDA context). Empty when NVML is missing or sees no GPU."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - NVMLError and friends: no driver library, no GPU
        return []
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            gpus.append((name.decode() if isinstance(name, bytes) else name, f"{major}{minor}"))
        return gpus
    except Exception:  # noqa: BLE001 - NVML's errors: a GPU it cannot name gets no shared directory
        return []
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - nothing to undo after a failed init
            pass


def gpu_kind(gpus: list[tuple[str, str]]) -> str | None:
    """`cuda-sm<cc>-<model>` (models joined by '+' when a pod holds several kinds); None when no GPU
    could be identified: then nothing is shared, since kernels built for one GPU fail on another."""
    kinds = sorted({f"cuda-sm{cc}-{_slug(name)}" for name, cc in gpus})
    return "+".join(kinds) if kinds else None


def device_kind(device: str, read_cpuinfo: Callable[[], str] | None = None,
                gpus: Callable[[], list[tuple[str, str]]] = _nvml_gpus) -> str | None:
    """The device part of the layout for `device` ("CPU" or "GPU"); None when it cannot be told."""
    if device.upper() == "GPU":
        return gpu_kind(gpus())
    if read_cpuinfo is None:
        def read_cpuinfo() -> str:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
                return info.read()
    try:
        return cpu_kind(read_cpuinfo(), platform.machine())
    except OSError:
        return None


def key_dir(root: str, version: str, device: str, model_key: str) -> str:
    return os.path.join(root, version, device, model_key.strip("/"))


# ------------------------------------------------------------------ files


Snapshot = dict[str, tuple[int, int]]  # relative path -> (size, mtime in ns)


def is_artifact(relative: str) -> bool:
    return not _NOT_ARTIFACTS.search(relative)


def snapshot(directory: str) -> Snapshot:
    """Every artifact file below `directory` with its size and mtime."""
    found: Snapshot = {}
    for parent, _dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(parent, name)
            relative = os.path.relpath(path, directory)
            if not is_artifact(relative):
                continue
            try:
                info = os.stat(path)
            except OSError:
                continue
            found[relative] = (info.st_size, info.st_mtime_ns)
    return found


def changed_since(before: Snapshot, after: Snapshot) -> list[str]:
    """Files created or rewritten between two snapshots, oldest first: a file written later may
    name one written earlier (vLLM's index names Inductor's files), so publishing in this order
    never shows a reference before what it refers to."""
    changed = [path for path, stat in after.items() if before.get(path) != stat]
    return sorted(changed, key=lambda path: (after[path][1], path))


def copy_in(shared: str, private: str) -> int:
    """Copy the published files of `shared` into `private`; the number copied. Files being
    published are skipped; a file that vanishes meanwhile (gc) is simply not there."""
    copied = 0
    for parent, _dirs, files in os.walk(shared):
        target_dir = os.path.join(private, os.path.relpath(parent, shared))
        for name in files:
            if PUBLISHING_PATTERN.match(name):
                continue
            os.makedirs(target_dir, exist_ok=True)
            try:
                shutil.copy2(os.path.join(parent, name), os.path.join(target_dir, name))
            except FileNotFoundError:
                continue
            copied += 1
    return copied


def publish_file(private: str, shared: str, relative: str) -> None:
    """Write one file into `shared` so that no reader ever sees part of it: a temporary name in the
    same directory, flushed, then renamed over its place."""
    source = os.path.join(private, relative)
    target = os.path.join(shared, relative)
    directory, name = os.path.split(target)
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".{name}.llmops-{unique_id()}.tmp")
    try:
        with open(source, "rb") as src, open(temporary, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        shutil.copystat(source, temporary)
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


# ------------------------------------------------------------------ one start


@dataclass
class CompileCache:
    """One engine start's use of the compile cache: `prepare` before vLLM starts, `finish` once it
    is healthy (or, for a batch, has exited successfully)."""

    root: str  # the engine's mount of <cache volume>/compile
    model_key: str
    private: str  # this start's own directory on the pod's disk
    device: str = "GPU"  # CPU | GPU
    shared: str | None = None  # the key directory; None when the cache cannot be used
    unusable: str | None = None  # why the volume is not written (or not used at all)
    copied: int = 0
    before: Snapshot = field(default_factory=dict)
    started: float = 0.0

    def prepare(self, environ: dict[str, str]) -> dict[str, str]:
        """Find the key directory, stamp it, copy it in; the environment vLLM should run with."""
        self.started = time.monotonic()
        # Never start from what an earlier run in this pod left (a crash may have cut a file short).
        shutil.rmtree(self.private, ignore_errors=True)
        version, kind = vllm_version(), device_kind(self.device)
        if kind is None:
            self.unusable = (f"could not identify the {self.device} (no NVML in the image?): compiled files are kept "
                             "in this pod only, since kernels built for one device fail on another")
        else:
            self.shared = key_dir(self.root, version, kind, self.model_key)
            self.unusable = _unwritable(self.shared)
            touch(self.shared + USED_SUFFIX)
            try:
                self.copied = copy_in(self.shared, self.private)
            except OSError as error:
                log.warning("Could not read the compile cache %s: %s; compiling from scratch", self.shared, error)
        env = dict(environ)
        for variable, subdirectory in CACHE_VARIABLES.items():
            if variable in environ:  # set in the spec (engine.env): the user's choice stands
                log.info("Left %s as set (%s): it is not kept in the compile cache", variable, environ[variable])
                continue
            env[variable] = os.path.join(self.private, subdirectory)
            os.makedirs(env[variable], exist_ok=True)
        self.before = snapshot(self.private)
        if self.shared:
            log.info("Copied %d compiled files from the compile cache %s (vLLM %s)", self.copied, self.shared, version)
        return env

    def finish(self) -> str:
        """Publish what this start compiled; log and return the result line (`contract.COMPILE_CACHE_LINE`)."""
        seconds = time.monotonic() - self.started
        after = snapshot(self.private)
        changed = changed_since(self.before, after)
        size = sum(after[path][0] for path in changed)
        if not changed and self.copied:
            result = CompileResult.REUSED
            detail = f"{self.copied} compiled files from {self.shared}, nothing compiled; healthy {seconds:.1f} s after start"
        elif not changed:
            result = CompileResult.NOTHING_COMPILED
            detail = f"the engine compiled nothing (eager mode?); healthy {seconds:.1f} s after start"
        elif self.shared is None or self.unusable:
            result = CompileResult.NOT_STORED
            detail = f"{len(changed)} files ({_mib(size)}) compiled and not stored: {self.unusable}"
        else:
            stored, why = self._publish(changed)
            if why:
                result = CompileResult.NOT_STORED
                detail = f"{len(changed)} files ({_mib(size)}) compiled, {stored} stored in {self.shared}: {why}"
            else:
                result = CompileResult.COMPILED
                detail = (f"{len(changed)} files ({_mib(size)}) compiled in {seconds:.1f} s and stored in "
                          f"{self.shared}; the next start of this model reuses them")
        line = COMPILE_CACHE_LINE.format(result=result, detail=detail)
        (log.warning if result == CompileResult.NOT_STORED else log.info)(line)
        return line

    def _publish(self, changed: list[str]) -> tuple[int, str | None]:
        assert self.shared is not None
        for count, relative in enumerate(changed):
            try:
                publish_file(self.private, self.shared, relative)
            except OSError as error:
                return count, f"{error.strerror or error} ({relative})"
        return len(changed), None


def _unwritable(directory: str) -> str | None:
    """Why compiled files cannot be stored in `directory` (None when they can): it cannot be made
    or written, or the volume is nearly full (the weights need the room more)."""
    try:
        os.makedirs(directory, exist_ok=True)
        probe = os.path.join(directory, f".write-check.llmops-{unique_id()}.tmp")
        with open(probe, "wb"):
            pass
        os.unlink(probe)
    except OSError as error:
        return f"{directory} is not writable: {error.strerror or error}"
    free = shutil.disk_usage(directory).free
    if free < MIN_FREE_BYTES:
        return f"the volume has only {_mib(free)} free (less than {_mib(MIN_FREE_BYTES)})"
    return None

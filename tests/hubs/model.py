"""A tiny generated model: real file formats, deterministic bytes, a few MB in all."""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TinyModel:
    files: dict[str, bytes] = field(default_factory=dict)
    _hashes: dict[tuple[str, str], str] = field(default_factory=dict, repr=False, compare=False)

    def sha256(self, path: str) -> str:
        key = ("sha256", path)
        if key not in self._hashes:  # the servers ask on every request: hash each file once
            self._hashes[key] = hashlib.sha256(self.files[path]).hexdigest()
        return self._hashes[key]

    def git_blob_sha1(self, path: str) -> str:
        key = ("sha1", path)
        if key not in self._hashes:
            data = self.files[path]
            self._hashes[key] = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        return self._hashes[key]

    @classmethod
    def from_directory(cls, root: Path) -> TinyModel:
        """Every file below `root` (a model directory of a few MB), by its relative path."""
        return cls(files={str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()})

    @property
    def total_size(self) -> int:
        return sum(len(b) for b in self.files.values())


def _pseudo_random(n: int, seed: bytes) -> bytes:
    """Deterministic incompressible bytes (so no transport can shortcut them)."""
    out = bytearray()
    block = hashlib.sha256(seed).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block * 64  # 2 KiB per hash: fast enough, still not trivially compressible
    return bytes(out[:n])


def _safetensors(n_floats: int) -> bytes:
    data = _pseudo_random(n_floats * 2, b"weights")
    header = {
        "__metadata__": {"format": "pt"},
        "model.embed_tokens.weight": {"dtype": "F16", "shape": [n_floats // 64, 64], "data_offsets": [0, len(data)]},
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def _gguf(payload: int) -> bytes:
    # GGUF v3 header: magic, version, tensor count, metadata kv count; then one string kv.
    key, value = b"general.architecture", b"llama"
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    head += struct.pack("<Q", len(key)) + key + struct.pack("<I", 8) + struct.pack("<Q", len(value)) + value
    return head + _pseudo_random(payload, b"gguf")


def make_tiny_model(weights_mb: float = 4, gguf_kb: int = 512) -> TinyModel:
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "num_attention_heads": 2,
        "num_hidden_layers": 1,
        "vocab_size": 256,
        "torch_dtype": "float16",
    }
    tokenizer = {"version": "1.0", "model": {"type": "BPE", "vocab": {chr(i): i for i in range(97, 123)}, "merges": []}}
    files = {
        "config.json": json.dumps(config, indent=2).encode(),
        "tokenizer.json": json.dumps(tokenizer).encode(),
        "model.safetensors": _safetensors(int(weights_mb * 1024 * 1024) // 2),
        "gguf/tiny-q4_0.gguf": _gguf(gguf_kb * 1024),
        "README.md": b"# tiny\n\nA generated test model.\n",
    }
    return TinyModel(files=files)

"""The model loader: the init container that fills (or checks) the weights volume.

Kept apart from the engine arguments (as KubeAI keeps its loader apart) because it speaks to the
hubs, not to vLLM: `llm-runtime download` (runtime/llm_runtime/cli.py) takes exactly these flags,
and computes the target directory with the same `llm_runtime.layout` functions as the renderer.
"""

from __future__ import annotations

from typing import Any

from llm_runtime.contract import ENDPOINT_ENV, TOKEN_ENV
from llm_runtime.layout import model_dir, parse_source

from ..api.models import LLMDeploymentSpec, ModelSpec, TokenizerSpec
from ..names import MODEL_CHECK_CONTAINER, MODEL_DOWNLOAD_CONTAINER
from .config import CACHE_MOUNT_PATH, RenderConfig

# Keys of spec.credentialsSecretRef's Secret, passed to the downloader as environment variables.
HUB_TOKEN_KEYS = tuple(TOKEN_ENV.values())
# What a tokenizer needs (tokenizer.json, tokenizer_config.json, vocab/merges, sentencepiece or
# tiktoken files, config.json for the model type) and no weights.
TOKENIZER_PATTERNS = ("*.json", "*.txt", "*.model", "*.tiktoken")


def container_name(model: ModelSpec) -> str:
    return MODEL_CHECK_CONTAINER if parse_source(model.source).scheme == "pvc" else MODEL_DOWNLOAD_CONTAINER


def download_args(model: ModelSpec) -> list[str]:
    """Arguments after `llm-runtime download`. A pvc:// source is only checked, not downloaded."""
    args = ["--source", model.source, "--cache-dir", CACHE_MOUNT_PATH]
    if model.revision:
        args += ["--revision", model.revision]
    if model.file:
        args += ["--file", model.file]
    for pattern in model.allowPatterns or ():
        args += ["--allow-pattern", pattern]
    for pattern in model.ignorePatterns or ():
        args += ["--ignore-pattern", pattern]
    return args


def tokenizer_download_args(tokenizer: TokenizerSpec) -> list[str]:
    """Arguments after `llm-runtime download` for the tokenizer's small files."""
    args = ["--source", tokenizer.source, "--cache-dir", CACHE_MOUNT_PATH]
    if tokenizer.revision:
        args += ["--revision", tokenizer.revision]
    for pattern in TOKENIZER_PATTERNS:
        args += ["--allow-pattern", pattern]
    return args


def tokenizer_path(tokenizer: TokenizerSpec | None) -> str | None:
    """Where the tokenizer lands in the cache: what `--tokenizer` is given (None: the model's own)."""
    if tokenizer is None:
        return None
    return model_dir(CACHE_MOUNT_PATH, parse_source(tokenizer.source), tokenizer.revision)


def download_env(spec: LLMDeploymentSpec, source: str, config: RenderConfig) -> list[dict[str, Any]]:
    """Hub tokens by Secret reference only (optional keys: a public model needs none) and mirrors."""
    env: list[dict[str, Any]] = []
    scheme = parse_source(source).scheme
    endpoint_variable = ENDPOINT_ENV.get(scheme)
    if endpoint_variable and scheme in config.hub_endpoints:
        env.append({"name": endpoint_variable, "value": config.hub_endpoints[scheme]})
    if spec.credentialsSecretRef and scheme != "pvc":
        for key in HUB_TOKEN_KEYS:
            env.append(
                {
                    "name": key,
                    "valueFrom": {
                        "secretKeyRef": {"name": spec.credentialsSecretRef.name, "key": key, "optional": True}
                    },
                }
            )
    return env

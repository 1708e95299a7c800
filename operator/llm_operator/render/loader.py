"""The model loader: the init containers that fill (or check) the weights volume.

Kept apart from the engine arguments (as KubeAI keeps its loader apart) because it speaks to the
hubs, not to vLLM: `llm-runtime download` (runtime/llm_runtime/cli.py) takes exactly these flags,
and computes the target directory with the same `llm_runtime.layout` functions as the renderer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_runtime.contract import CREDENTIALS_SECRET_ENV, ENDPOINT_ENV, TOKEN_ENV
from llm_runtime.layout import COMPILE_DIR, ModelSource, model_dir

from ..api.workload import ModelSpec, TokenizerSpec
from ..names import MODEL_CHECK_CONTAINER, MODEL_DOWNLOAD_CONTAINER, TOKENIZER_CONTAINER
from .config import CACHE_MOUNT_PATH, RenderConfig

# Keys of spec.credentialsSecretRef's Secret, passed to the downloader as environment variables.
HUB_TOKEN_KEYS = tuple(TOKEN_ENV.values())
# What a tokenizer needs (tokenizer.json, tokenizer_config.json, vocab/merges, sentencepiece or
# tiktoken files, config.json for the model type) and no weights.
TOKENIZER_PATTERNS = ("*.json", "*.txt", "*.model", "*.tiktoken")


@dataclass(frozen=True)
class Loader:
    """One init container: its name, the arguments after `llm-runtime download`, its environment,
    and whether it only reads the volume (a pvc:// model is checked in place, never written)."""

    name: str
    args: list[str]
    env: list[dict[str, Any]]
    read_only: bool


def _value_flag(flag: str, value: str) -> str:
    """`--flag=value` as one argument: a value that starts with '-' (a file or glob may) is never
    taken for a flag by the downloader's parser."""
    return f"{flag}={value}"


def download_args(model: ModelSpec, compile_dir: bool = False) -> list[str]:
    """Arguments after `llm-runtime download`. A pvc:// source is only checked, not downloaded. With
    `compile_dir`, the loader also makes the compile directory, which the engine mounts by subPath:
    made by the kubelet instead, it would belong to root and the engine could not write it."""
    args = ["--source", model.source, "--cache-dir", CACHE_MOUNT_PATH]
    if model.revision:
        args += ["--revision", model.revision]
    if model.file:
        args.append(_value_flag("--file", model.file))
    args += [_value_flag("--allow-pattern", pattern) for pattern in model.allowPatterns or ()]
    args += [_value_flag("--ignore-pattern", pattern) for pattern in model.ignorePatterns or ()]
    if compile_dir:
        args.append(_value_flag("--make-dir", f"{CACHE_MOUNT_PATH}/{COMPILE_DIR}"))
    return args


def tokenizer_download_args(tokenizer: TokenizerSpec) -> list[str]:
    """Arguments after `llm-runtime download` for the tokenizer's small files."""
    args = ["--source", tokenizer.source, "--cache-dir", CACHE_MOUNT_PATH]
    if tokenizer.revision:
        args += ["--revision", tokenizer.revision]
    return args + [_value_flag("--allow-pattern", pattern) for pattern in TOKENIZER_PATTERNS]


def tokenizer_path(tokenizer: TokenizerSpec | None) -> str | None:
    """Where the tokenizer lands in the cache: what `--tokenizer` is given (None: the model's own)."""
    if tokenizer is None:
        return None
    return model_dir(CACHE_MOUNT_PATH, tokenizer.parsed_source, tokenizer.revision)


def download_env(credentials_secret: str | None, source: ModelSource, config: RenderConfig) -> list[dict[str, Any]]:
    """Hub tokens by Secret reference only (optional keys: a public model needs none) and mirrors."""
    env: list[dict[str, Any]] = []
    endpoint_variable = ENDPOINT_ENV.get(source.scheme)
    if endpoint_variable and source.scheme in config.hub_endpoints:
        env.append({"name": endpoint_variable, "value": config.hub_endpoints[source.scheme]})
    if credentials_secret and source.is_hub:
        env += [{"name": key, "valueFrom": {"secretKeyRef": {"name": credentials_secret, "key": key, "optional": True}}}
                for key in HUB_TOKEN_KEYS]
        # Optional keys cannot tell a missing Secret from a missing key: the downloader names the
        # Secret when the hub refuses a download that went without a token.
        env.append({"name": CREDENTIALS_SECRET_ENV, "value": credentials_secret})
    return env


def loaders(credentials_secret: str | None, model: ModelSpec, config: RenderConfig,
            compile_dir: bool = False) -> tuple[Loader, ...]:
    """The model's loader, then the tokenizer's when the model names another tokenizer; hub tokens
    come from the Secret `credentials_secret` (spec.credentialsSecretRef)."""
    source = model.parsed_source
    model_loader = Loader(
        name=MODEL_DOWNLOAD_CONTAINER if source.is_hub else MODEL_CHECK_CONTAINER,
        args=download_args(model, compile_dir),
        env=download_env(credentials_secret, source, config),
        read_only=not source.is_hub,
    )
    tokenizer = model.tokenizer
    if tokenizer is None:
        return (model_loader,)
    # The CRD allows hub tokenizers only, so the tokenizer always writes into the cache.
    return model_loader, Loader(
        name=TOKENIZER_CONTAINER,
        args=tokenizer_download_args(tokenizer),
        env=download_env(credentials_secret, tokenizer.parsed_source, config),
        read_only=False,
    )

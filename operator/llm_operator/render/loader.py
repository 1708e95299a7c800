"""The model loader: the init container that fills (or checks) the weights volume.

Kept apart from the engine arguments (as KubeAI keeps its loader apart) because it speaks to the
hubs, not to vLLM: `llm-runtime download` (runtime/llm_runtime/cli.py) takes exactly these flags,
and computes the target directory with the same `llm_runtime.layout` functions as the renderer.
"""

from __future__ import annotations

from typing import Any

from llm_runtime.layout import parse_source

from ..api.models import LLMDeploymentSpec, ModelSpec
from .config import CACHE_MOUNT_PATH, RenderConfig

# Keys of spec.credentialsSecretRef's Secret, passed to the downloader as environment variables.
HUB_TOKEN_KEYS = ("MODELSCOPE_API_TOKEN", "HF_TOKEN")
HUB_ENDPOINT_VARIABLES = {"modelscope": "MODELSCOPE_ENDPOINT", "hf": "HF_ENDPOINT"}


def container_name(model: ModelSpec) -> str:
    return "model-check" if parse_source(model.source).scheme == "pvc" else "model-download"


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


def download_env(spec: LLMDeploymentSpec, model: ModelSpec, config: RenderConfig) -> list[dict[str, Any]]:
    """Hub tokens by Secret reference only (optional keys: a public model needs none) and mirrors."""
    env: list[dict[str, Any]] = []
    scheme = parse_source(model.source).scheme
    endpoint_variable = HUB_ENDPOINT_VARIABLES.get(scheme)
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

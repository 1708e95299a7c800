"""Hypothesis strategies for valid LLMDeployment specs (shared by the property and vLLM contract tests)."""

from __future__ import annotations

from hypothesis import strategies as st

_name = st.from_regex(r"[a-z][a-z0-9]{0,8}(-[a-z0-9]{1,6})?", fullmatch=True)
_repo = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True).filter(lambda s: ".." not in s)
_parser = st.sampled_from(["hermes", "llama3_json", "mistral", "pythonic", "qwen3_coder"])
_reasoning = st.sampled_from(["deepseek_r1", "qwen3", "granite"])


@st.composite
def sources(draw):
    scheme = draw(st.sampled_from(["modelscope", "hf", "pvc"]))
    if scheme == "pvc":
        return f"pvc://{draw(_name)}/{draw(_repo)}"
    return f"{scheme}://{draw(_repo)}/{draw(_repo)}"


@st.composite
def models(draw):
    source = draw(sources())
    model = {"source": source}
    if not source.startswith("pvc://"):
        if draw(st.booleans()):
            model["revision"] = draw(st.sampled_from(["master", "main", "v1.0", "refs/pr/1", "a1b2c3d"]))
        if draw(st.booleans()):
            model["file"] = draw(_repo).lstrip(".") + ".gguf"
        elif draw(st.booleans()):
            model["ignorePatterns"] = ["*.pth", "original/*"]
        if draw(st.booleans()):
            model["tokenizer"] = {"source": f"hf://{draw(_repo)}/{draw(_repo)}"}
    if draw(st.booleans()):
        model["servedName"] = draw(_repo)
    return model


@st.composite
def parallelism(draw):
    pipeline = draw(st.sampled_from([1, 1, 2]))
    tensor = draw(st.sampled_from([1, 2, 4]))
    out = {"gpus": tensor * pipeline}
    if pipeline > 1 or draw(st.booleans()):
        out["pipelineParallelSize"] = pipeline
    if draw(st.booleans()):
        out["tensorParallelSize"] = tensor
    return out


def _engine_common(draw) -> dict:
    engine = {}
    if draw(st.booleans()):
        engine["maxModelLen"] = draw(st.integers(16, 131072))
    if draw(st.booleans()):
        engine["gpuMemoryUtilization"] = draw(st.floats(0.05, 1.0, allow_nan=False).map(lambda f: round(f, 3)))
    if draw(st.booleans()):
        engine["dtype"] = draw(st.sampled_from(["auto", "half", "float16", "bfloat16", "float", "float32"]))
    if draw(st.booleans()):
        engine["quantization"] = draw(st.sampled_from(["gptq", "awq", "fp8", "bitsandbytes"]))
    if draw(st.booleans()):
        engine["enablePrefixCaching"] = draw(st.booleans())
    if draw(st.booleans()):
        engine["trustRemoteCode"] = draw(st.booleans())
    if draw(st.booleans()):
        engine["extraArgs"] = draw(st.sampled_from([["--max-num-seqs", "64"], ["--seed=7"], ["--enforce-eager"]]))
    return engine


@st.composite
def roles(draw, role: str):
    on_cpu = draw(st.booleans())
    spec = {"model": draw(models())}
    if on_cpu:
        spec["device"] = "CPU"
        if draw(st.booleans()):
            spec["kvCacheSize"] = draw(st.sampled_from(["1Gi", "4Gi", "1536Mi", 10**9, "2048Mi"]))
    else:
        spec.update(draw(parallelism()))
    scaling = draw(st.sampled_from(["default", "replicas", "autoscaling"]))
    if scaling == "replicas":
        spec["replicas"] = draw(st.integers(0, 4))
    elif scaling == "autoscaling":
        spec["autoscaling"] = {"provider": "External"}
    # Quantities as users write them, canonical or not ("0.5", "65536Mi", "2048Mi" come back from
    # the API server as "500m", "64Gi", "2Gi").
    if draw(st.booleans()):
        spec["shmSize"] = draw(st.sampled_from(["1Gi", "8Gi", "512Mi", "2048Mi", "0.5Gi"]))
    if draw(st.booleans()):
        spec["resources"] = {"cpu": draw(st.sampled_from(["4", "500m", 8, "0.5", "1000m", "1.5"])),
                             "memory": draw(st.sampled_from(["32Gi", "65536Mi", "1024Mi", "2G", "1e9"]))}
    if draw(st.booleans()):
        spec["scheduling"] = {"nodeSelector": {"gpu": "a100"}, "tolerations": [{"key": "dedicated", "operator": "Exists"}]}
    engine = _engine_common(draw)
    if on_cpu:
        engine.pop("gpuMemoryUtilization", None)
    if role == "llm":
        if draw(st.booleans()):
            engine["toolCallParser"] = draw(_parser)
        if draw(st.booleans()):
            engine["reasoningParser"] = draw(_reasoning)
    elif draw(st.booleans()):
        engine["convert"] = draw(st.sampled_from(["embed", "classify"]))
    if engine:
        spec["engine"] = engine
    return spec


@st.composite
def llmdeployment_specs(draw):
    chosen = draw(st.sets(st.sampled_from(["llm", "embedding", "rerank"]), min_size=1))
    spec = {role: draw(roles(role)) for role in sorted(chosen)}
    cache = draw(st.sampled_from([None, {"size": "100Gi"}, {"size": 10**11, "storageClassName": "nfs"}, {"size": "102400Mi"},
                                  {"existingClaim": "weights"}]))
    if cache:
        spec["cache"] = cache
    if draw(st.booleans()):
        spec["apiKeySecretRef"] = {"name": "key", "key": "api-key"}
    if draw(st.booleans()):
        spec["credentialsSecretRef"] = {"name": "tokens"}
    if draw(st.booleans()):
        spec["service"] = {"allowedNamespaces": draw(st.lists(_name, min_size=1, max_size=3, unique=True))}
    return spec


names = _name

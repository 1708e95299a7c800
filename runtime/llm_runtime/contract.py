"""What the operator and the runtime must agree on.

Environment variables the operator sets on the download init container and the runtime reads: hub
tokens (from spec.credentialsSecretRef, by Secret reference only) and hub mirrors. And the progress
line `llm-runtime batch` logs while vLLM runs, which the operator reads from the pod's log into the
LLMBatch's status. And the line every engine start logs about the compile cache, which the operator
reads from the pod's log into the LLMDeployment's status (and an LLMBatch's runner into its summary)."""

import re
from enum import StrEnum

TOKEN_ENV = {"modelscope": "MODELSCOPE_API_TOKEN", "hf": "HF_TOKEN"}
ENDPOINT_ENV = {"modelscope": "MODELSCOPE_ENDPOINT", "hf": "HF_ENDPOINT"}
# The name (never the content) of the Secret spec.credentialsSecretRef names: its token keys are
# optional, so a missing Secret means no token, and the downloader names it when the hub refuses.
CREDENTIALS_SECRET_ENV = "LLMOPS_CREDENTIALS_SECRET"

BATCH_PROGRESS = "Batch progress: {done}/{total} requests done"
BATCH_PROGRESS_PATTERN = re.compile(r"Batch progress: (\d+)/(\d+) requests done")


class CompileResult(StrEnum):
    """What one engine start did with the compile cache (llm_runtime.compile_cache)."""

    REUSED = "Reused"  # every compiled file came from the cache volume: nothing was compiled
    COMPILED = "Compiled"  # something was compiled, and stored on the volume for the next start
    NOT_STORED = "NotStored"  # something was compiled and could not be stored (the line says why)
    NOTHING_COMPILED = "NothingCompiled"  # the engine compiles nothing (eager mode)

    def __str__(self) -> str:
        return self.value


COMPILE_CACHE_LINE = "Compile cache {result}: {detail}"
COMPILE_CACHE_PATTERN = re.compile(r"Compile cache (Reused|Compiled|NotStored|NothingCompiled): (.*)")

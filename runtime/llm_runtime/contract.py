"""What the operator and the runtime must agree on.

Environment variables the operator sets on the download init container and the runtime reads: hub
tokens (from spec.credentialsSecretRef, by Secret reference only) and hub mirrors. And the progress
line `llm-runtime batch` logs while vLLM runs, which the operator reads from the pod's log into the
LLMBatch's status."""

import re

TOKEN_ENV = {"modelscope": "MODELSCOPE_API_TOKEN", "hf": "HF_TOKEN"}
ENDPOINT_ENV = {"modelscope": "MODELSCOPE_ENDPOINT", "hf": "HF_ENDPOINT"}

BATCH_PROGRESS = "Batch progress: {done}/{total} requests done"
BATCH_PROGRESS_PATTERN = re.compile(r"Batch progress: (\d+)/(\d+) requests done")

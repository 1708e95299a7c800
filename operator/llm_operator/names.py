"""Every name that two files must agree on: the labels and annotation the renderer writes and the
watches, reconcile and status read back, and the container names status looks for in pods.
The hub variables the runtime reads are in `llm_runtime.contract`, beside the code that reads them."""

# Labels on every child and pod. The two llmops.dev ones select a role's pods (and are immutable
# in a Deployment's selector); managed-by is what the operator's watches select on.
DEPLOYMENT_LABEL = "llmops.dev/deployment"
ROLE_LABEL = "llmops.dev/role"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "llm-operator"
# On an LLMGateway's objects and pods, with the gateway's name (render/gateway/, handlers).
GATEWAY_LABEL = "llmops.dev/gateway"
# On the objects and pod of an LLMGateway's chat page, with the gateway's name (render/gateway/chat_page.py).
CHAT_PAGE_LABEL = "llmops.dev/chat-page"

# On an LLMBatch's Job and pods, with the batch's name (render/batch.py, handlers).
BATCH_LABEL = "llmops.dev/batch"

# Annotation with the hash of an object as rendered: equal hashes mean nothing to apply.
HASH_ANNOTATION = "llmops.dev/rendered-hash"

# Containers of a role's pod.
ENGINE_CONTAINER = "vllm"
MODEL_DOWNLOAD_CONTAINER = "model-download"  # hub sources: fetch into the cache volume
MODEL_CHECK_CONTAINER = "model-check"  # pvc:// sources: check only, read-only mount
TOKENIZER_CONTAINER = "tokenizer-download"
LOADER_CONTAINERS = (MODEL_DOWNLOAD_CONTAINER, MODEL_CHECK_CONTAINER, TOKENIZER_CONTAINER)

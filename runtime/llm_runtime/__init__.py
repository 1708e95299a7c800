"""llm_runtime: what runs inside the vLLM runtime image (model download, cache, vLLM helpers)."""

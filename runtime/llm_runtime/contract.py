"""Environment variables the operator sets on the download init container and the runtime reads:
hub tokens (from spec.credentialsSecretRef, by Secret reference only) and hub mirrors."""

TOKEN_ENV = {"modelscope": "MODELSCOPE_API_TOKEN", "hf": "HF_TOKEN"}
ENDPOINT_ENV = {"modelscope": "MODELSCOPE_ENDPOINT", "hf": "HF_ENDPOINT"}

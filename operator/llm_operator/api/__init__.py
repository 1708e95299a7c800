"""The llmops.dev API as pydantic models, the single source of the CRDs: one module per kind
(llmdeployment.py, llmgateway.py, llmbatch.py) over the types they share (meta.py: group, version,
metadata, conditions, Secret references; workload.py: model, engine, scheduling, resources)."""

from .llmdeployment import KIND, PLURAL, ROLES, LLMDeployment, LLMDeploymentSpec, LLMDeploymentStatus, RoleSpec
from .meta import API_VERSION, GROUP, VERSION
from .validation import InvalidSpec, parse_llmdeployment

__all__ = ["API_VERSION", "GROUP", "KIND", "PLURAL", "ROLES", "VERSION", "InvalidSpec", "LLMDeployment",
           "LLMDeploymentSpec", "LLMDeploymentStatus", "RoleSpec", "parse_llmdeployment"]

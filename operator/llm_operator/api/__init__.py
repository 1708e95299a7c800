"""Typed LLMDeployment API: pydantic models that are also the source of the CRD schema."""

from .llmdeployment import KIND, PLURAL, ROLES, LLMDeployment, LLMDeploymentSpec, LLMDeploymentStatus, RoleSpec
from .meta import API_VERSION, GROUP, VERSION
from .validation import InvalidSpec, parse_llmdeployment

__all__ = ["API_VERSION", "GROUP", "KIND", "PLURAL", "ROLES", "VERSION", "InvalidSpec", "LLMDeployment",
           "LLMDeploymentSpec", "LLMDeploymentStatus", "RoleSpec", "parse_llmdeployment"]

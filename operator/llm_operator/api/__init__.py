"""Typed LLMDeployment API: pydantic models that are also the source of the CRD schema."""

from .models import (  # noqa: F401
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    ROLES,
    VERSION,
    LLMDeployment,
    LLMDeploymentSpec,
    LLMDeploymentStatus,
    RoleSpec,
)
from .validation import InvalidSpec, parse_llmdeployment  # noqa: F401

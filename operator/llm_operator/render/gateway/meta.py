"""Names and labels of a gateway's objects."""

from __future__ import annotations

from ...names import GATEWAY_LABEL
from ..meta import app_labels


def gateway_name(gateway: str) -> str:
    return f"{gateway}-gateway"


def gateway_labels(gateway: str) -> dict[str, str]:
    return {**app_labels("llm-gateway", gateway, "gateway"), GATEWAY_LABEL: gateway}

"""An LLMGateway's objects: one endpoint for the models of the LLMDeployments it selects.

The gateway pod runs Envoy in front and one vLLM router per served model behind it:

- Envoy (the `envoy` container, the only one listening beyond the pod's loopback) checks the
  gateway's key, answers GET /v1/models, reads the body's `model` and sends the request on with the
  model's own key (gateway.lua). Unknown models get a 404 in OpenAI's format.
- Each router (`router-<i>`) finds the ready pods of one role by its labels (its own Kubernetes
  service discovery, hence the Role to watch pods) and picks one by the gateway's policy. It serves
  chat, completions and embeddings. vLLM's other APIs (rerank, score, pooling, tokenize ...) go
  from Envoy to the role's Service instead: the router forwards no Authorization header on them,
  and rewrites a /v1/rerank body so that vLLM refuses it.

Why not one router for every model (its IGW mode): it learns a pod's model from an unauthenticated
GET /v1/models, so models with a key register as "unknown", and it sends requests for models it
does not know to any pod. docs/gateway.md has what was measured.

One module per child: `routes.py` decides what is routed, `envoy.py` the ConfigMap, `deployment.py`
the pod, `service.py` and `rbac.py` the rest, `chat_page.py` the optional chat page. Pure like the
rest of render/: the routes come in already worked out from the selected LLMDeployments.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ...api.llmgateway import GATEWAY_KIND, LLMGateway
from ..config import RenderConfig
from ..meta import finished
from .chat_page import render_chat_page
from .deployment import deployment
from .envoy import config_map
from .rbac import rbac
from .routes import GatewayRoute, chat_models
from .service import service


def _hash(data: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _http_base(address: str) -> str:
    """The URL of "clusterIP:port"; an IPv6 address is bracketed, as a URL needs (RFC 3986)."""
    host, port = address.rsplit(":", 1)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def render_gateway(gateway: LLMGateway, routes: list[GatewayRoute], config: RenderConfig | None = None,
                   address: str | None = None) -> list[dict[str, Any]]:
    """Every object of the gateway: ServiceAccount, Role, RoleBinding, ConfigMap, Deployment, Service,
    and with spec.chatPage the page's PersistentVolumeClaim, Service and, once the gateway's Service
    has an `address` ("clusterIP:port") for it to reach, its Deployment."""
    config = config or RenderConfig()
    settings = config_map(gateway, routes)
    endpoint = f"{_http_base(address)}/v1" if address else None
    objects = [*rbac(gateway), settings, deployment(gateway, routes, config, _hash(settings["data"])), service(gateway),
               *render_chat_page(gateway, endpoint, chat_models(routes), config.chat_page_image)]
    return finished(objects, GATEWAY_KIND, gateway.metadata)

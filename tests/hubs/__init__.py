"""Local model-hub servers (ModelScope and Hugging Face) for tests: loopback only."""

from .model import TinyModel, make_tiny_model
from .server import HFHub, HubServer, ModelScopeHub

__all__ = ["TinyModel", "make_tiny_model", "HubServer", "HFHub", "ModelScopeHub"]

"""Vane's Python SDK: versioned prompts with a local cache and fallback, and tracing of LLM runs."""

from vane.client import Vane
from vane.config import ClientConfig

__all__ = ["ClientConfig", "Vane"]

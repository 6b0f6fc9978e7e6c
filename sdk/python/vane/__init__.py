"""Vane's Python SDK: versioned prompts with a local cache and fallback, and tracing of LLM runs."""

from vane.client import Vane
from vane.config import ClientConfig
from vane.deciding import CompareResult, Comparison, Experiment, RankedVersion, Regression, TimeSeries, WinnerResult
from vane.http_json import ApiError
from vane.observe import observe
from vane.prompt import Prompt
from vane.prompts import PromptError, PromptNotFound, PromptRejected, RegistryUnavailable
from vane.rollouts import Rollout, RolloutStep
from vane.tracing import ScoreError
from vane.tracing_generation import Generation, current_generation, update_current_generation
from vane.tracing_register import EvalTag, ProjectType, flush, register

__all__ = [
    "ApiError",
    "ClientConfig",
    "CompareResult",
    "Comparison",
    "EvalTag",
    "Experiment",
    "Generation",
    "ProjectType",
    "Prompt",
    "PromptError",
    "PromptNotFound",
    "PromptRejected",
    "RankedVersion",
    "RegistryUnavailable",
    "Regression",
    "Rollout",
    "RolloutStep",
    "ScoreError",
    "TimeSeries",
    "Vane",
    "WinnerResult",
    "current_generation",
    "flush",
    "observe",
    "register",
    "update_current_generation",
]

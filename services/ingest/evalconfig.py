"""The two questions Future AGI's traceAI asks when `register(..., eval_tags=[...])` runs, answered
from Vane's evaluator catalogue so that its SDK works unchanged with FI_BASE_URL pointed at Vane.

- check_exists: traceAI refuses to register when a config exists; Vane keeps eval tags on the
  spans' resource (the evaluator reads them there), so there is never a conflicting config.
- get_custom_eval_by_name: a catalogue evaluator is described as a "user eval template" whose
  required keys are the evaluator's inputs, so traceAI checks the tag's mapping against them.
  Other names are left to traceAI's own table of its system evals.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import post
from litestar.types import ControllerRouterHandler

from services.common.catalogue import CATALOGUE


class EvalByName(msgspec.Struct):
    eval_template_name: str


def describe(name: str) -> dict[str, Any]:
    spec = CATALOGUE.get(name)
    if spec is None:
        return {"isUserEvalTemplate": False}
    return {
        "isUserEvalTemplate": True,
        "evalTemplate": {
            "name": spec.name,
            "version": spec.version,
            "description": spec.description,
            "outputType": spec.output,
            "config": {"requiredKeys": list(spec.inputs)},
        },
    }


def eval_config_routes() -> list[ControllerRouterHandler]:
    @post("/tracer/custom-eval-config/check_exists", status_code=200)
    async def check_exists(project_id: uuid.UUID) -> dict[str, Any]:
        return {"status": True, "result": {"exists": False}}

    @post("/tracer/custom-eval-config/get_custom_eval_by_name", status_code=200)
    async def get_custom_eval_by_name(project_id: uuid.UUID, data: EvalByName) -> dict[str, Any]:
        return {"status": True, "result": describe(data.eval_template_name)}

    return [check_exists, get_custom_eval_by_name]

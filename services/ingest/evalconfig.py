"""The two questions Future AGI's traceAI asks when `register(..., eval_tags=[...])` runs, answered
from Vane's evaluator catalogue so that its SDK works unchanged with FI_BASE_URL pointed at Vane.

- check_exists: traceAI refuses to register when a config exists; Vane keeps eval tags on the
  spans' resource (the evaluator reads them there), so there is never a conflicting config.
- get_custom_eval_by_name: every eval Vane runs is described as a "user eval template" whose
  required keys are the mapping keys it accepts, so traceAI checks the tag's mapping against them:
  a traceAI system eval takes traceAI's own keys (`is_json`: `text`) and its evaluator's Vane names
  (`output`); a Vane evaluator takes its inputs. For an eval Vane cannot run, the one "allowed key"
  is the refusal, naming what Vane runs: traceAI raises it at `EvalTag(...)`, inside `register(...)`,
  as "Unexpected mapping field 'input' for tone. Allowed fields are: [...]".
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import post
from litestar.types import ControllerRouterHandler

from services.common.catalogue import CATALOGUE, TRACEAI_EVALS, offered


class EvalByName(msgspec.Struct):
    eval_template_name: str


def describe(name: str) -> dict[str, Any]:
    system = TRACEAI_EVALS.get(name)
    spec = CATALOGUE.get(system.evaluator if system else name)
    if spec is None:
        refusal = f"none: Vane cannot run {name!r}. Vane runs {offered()}"
        return {"isUserEvalTemplate": True, "evalTemplate": {"name": name, "config": {"requiredKeys": [refusal]}}}
    # traceAI's keys first, then the evaluator's own input names (a key renamed away is not one of them)
    keys = [*system.keys, *(i for i in spec.inputs if i not in system.inputs)] if system else list(spec.inputs)
    return {
        "isUserEvalTemplate": True,
        "evalTemplate": {
            "name": name,
            "version": spec.version,
            "description": spec.description,
            "outputType": spec.output,
            "config": {"requiredKeys": list(dict.fromkeys(keys))},
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

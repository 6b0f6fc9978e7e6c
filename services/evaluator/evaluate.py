"""Runs one planned evaluation with the evaluator it names: a rule, the embedding model or the judge."""

from __future__ import annotations

from services.evaluator.embedding import EmbeddingBatcher, ModelUnavailable
from services.evaluator.judge import Judge
from services.evaluator.outcomes import EvaluationFailed, Outcome
from services.evaluator.rules import RULES
from services.evaluator.selection import Planned


class Evaluators:
    """The process's evaluators. `run` returns an Outcome (a value, or a recorded failure) and
    lets JudgeUnavailable through, so that the caller may try the span again later."""

    def __init__(self, judge: Judge, embeddings: EmbeddingBatcher) -> None:
        self.judge = judge
        self.embeddings = embeddings

    async def run(self, project_id: str, planned: Planned) -> Outcome:
        if planned.missing:
            where = ", ".join(f"{name} at {path!r}" for name, path in planned.missing.items())
            return Outcome.failed(f"nothing found in the span for {where}")
        try:
            return await self._dispatch(project_id, planned)
        except EvaluationFailed as exc:
            return Outcome.failed(str(exc))

    async def _dispatch(self, project_id: str, planned: Planned) -> Outcome:
        name = planned.spec.name
        if name in RULES:
            return RULES[name](planned.inputs, planned.config)
        if name == "embedding_similarity":
            return await self._similarity(planned)
        if name == "llm_judge":
            return await self.judge.judge(project_id, planned.inputs, planned.config)
        raise EvaluationFailed(f"evaluator {name!r} has no implementation in this build")

    async def _similarity(self, planned: Planned) -> Outcome:
        against = str(planned.config.get("against", "reference"))
        if against not in ("reference", "context"):
            raise EvaluationFailed(f"config.against must be reference or context, got {against!r}")
        output, other = planned.inputs.get("output"), planned.inputs.get(against)
        if not output or not other:
            raise EvaluationFailed(f"embedding_similarity needs a non-empty output and {against}")
        try:
            similarity = await self.embeddings.similarity(output, other)
        except ModelUnavailable as exc:
            raise EvaluationFailed(str(exc)) from exc
        return Outcome(similarity, explanation=f"cosine similarity of the output to the {against} (all-MiniLM-L6-v2)")

    async def close(self) -> None:
        await self.judge.close()
        await self.embeddings.close()

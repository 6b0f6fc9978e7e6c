"""The evaluator's own settings from the environment: the default judge and how hard to push it."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.settings import env_float, env_str


@dataclass(frozen=True)
class JudgeDefaults:
    """The judge a rule gets when its config names none, and the limits every judge call obeys."""

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini"
    api_key: str = ""
    timeout_seconds: float = 30.0
    retries: int = 3  # after the first attempt
    backoff_seconds: float = 0.5  # first retry's pause; doubles, with jitter, up to max_backoff_seconds
    max_backoff_seconds: float = 20.0
    concurrency: int = 512  # judge calls in flight per process
    rate_per_second: float = 50.0  # judge calls per project per second
    input_price_per_mtok: float | None = None  # USD per million tokens, when the model is not in the table
    output_price_per_mtok: float | None = None


@dataclass(frozen=True)
class EvaluatorConfig:
    judge: JudgeDefaults
    max_in_flight: int = 512  # span messages evaluated at once
    max_deliveries: int = 6  # while the judge is down: deliveries of a span before its error is recorded
    redelivery_delay_seconds: float = 10.0  # first nak delay; doubles per delivery, up to 120 s
    rules_ttl_seconds: float = 2.0  # how stale a replica's copy of a project's rules may be

    @classmethod
    def from_env(cls) -> EvaluatorConfig:
        input_price = env_str("VANE_JUDGE_INPUT_PRICE_PER_MTOK", "")
        output_price = env_str("VANE_JUDGE_OUTPUT_PRICE_PER_MTOK", "")
        judge = JudgeDefaults(
            base_url=env_str("VANE_JUDGE_BASE_URL", JudgeDefaults.base_url),
            model=env_str("VANE_JUDGE_MODEL", JudgeDefaults.model),
            api_key=env_str("VANE_JUDGE_API_KEY", ""),
            timeout_seconds=env_float("VANE_JUDGE_TIMEOUT_SECONDS", JudgeDefaults.timeout_seconds),
            retries=int(env_float("VANE_JUDGE_RETRIES", JudgeDefaults.retries)),
            backoff_seconds=env_float("VANE_JUDGE_BACKOFF_SECONDS", JudgeDefaults.backoff_seconds),
            max_backoff_seconds=env_float("VANE_JUDGE_MAX_BACKOFF_SECONDS", JudgeDefaults.max_backoff_seconds),
            concurrency=int(env_float("VANE_JUDGE_CONCURRENCY", JudgeDefaults.concurrency)),
            rate_per_second=env_float("VANE_JUDGE_RATE_PER_SECOND", JudgeDefaults.rate_per_second),
            input_price_per_mtok=float(input_price) if input_price else None,
            output_price_per_mtok=float(output_price) if output_price else None,
        )
        return cls(
            judge=judge,
            max_in_flight=int(env_float("VANE_EVALUATOR_MAX_IN_FLIGHT", cls.max_in_flight)),
            max_deliveries=int(env_float("VANE_EVALUATOR_MAX_DELIVERIES", cls.max_deliveries)),
            redelivery_delay_seconds=env_float("VANE_EVALUATOR_REDELIVERY_DELAY_SECONDS", cls.redelivery_delay_seconds),
            rules_ttl_seconds=env_float("VANE_EVALUATOR_RULES_TTL_SECONDS", cls.rules_ttl_seconds),
        )


# For the README: the evaluator's variables and defaults.
ENVIRONMENT = [
    ("VANE_JUDGE_BASE_URL", JudgeDefaults.base_url, "OpenAI-compatible endpoint of the default LLM judge"),
    ("VANE_JUDGE_MODEL", JudgeDefaults.model, "the default judge model"),
    ("VANE_JUDGE_API_KEY", "unset", "the default judge's key (a rule may name another in config.api_key_env)"),
    ("VANE_JUDGE_KEY_ENVS", "unset", "variables a rule's config.api_key_env may name (comma-separated)"),
    ("VANE_JUDGE_TIMEOUT_SECONDS", "30", "one judge call's deadline"),
    ("VANE_JUDGE_RETRIES", "3", "retries of a failed judge call (timeouts, 429, 5xx), with backoff"),
    ("VANE_JUDGE_BACKOFF_SECONDS", str(JudgeDefaults.backoff_seconds), "first retry delay (doubles; Retry-After wins)"),
    ("VANE_JUDGE_MAX_BACKOFF_SECONDS", str(JudgeDefaults.max_backoff_seconds), "longest retry delay"),
    ("VANE_JUDGE_CONCURRENCY", "512", "judge calls in flight per evaluator process"),
    ("VANE_JUDGE_RATE_PER_SECOND", "50", "judge calls per project per second"),
    ("VANE_JUDGE_INPUT_PRICE_PER_MTOK", "unset", "USD per million judge input tokens for models not in the table"),
    ("VANE_JUDGE_OUTPUT_PRICE_PER_MTOK", "unset", "USD per million judge output tokens, likewise"),
    ("VANE_EVALUATOR_MAX_IN_FLIGHT", "512", "span messages evaluated at once"),
    ("VANE_EVALUATOR_MAX_DELIVERIES", "6", "deliveries of a span while its judge is down, before an error is recorded"),
    ("VANE_EVALUATOR_REDELIVERY_DELAY_SECONDS", "10", "first redelivery delay while the judge is down (doubles)"),
    ("VANE_EVALUATOR_RULES_TTL_SECONDS", "2", "how soon a rule edit reaches every evaluator replica"),
]

"""`@vane.observe(as_type="generation")`: a span around each call of a function, sync or async,
with its arguments as input and its return value as output."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from vane.tracing_generation import generation_span
from vane.tracing_register import get_tracer

F = TypeVar("F", bound=Callable[..., Any])


def _call_input(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        bound = inspect.signature(fn).bind_partial(*args, **kwargs)
    except TypeError:
        return {"args": list(args), "kwargs": kwargs}
    return {k: v for k, v in bound.arguments.items() if k not in ("self", "cls")}


def observe(
    as_type: str = "span",
    name: str | None = None,
    *,
    model: str | None = None,
    prompt: Any = None,
    capture_input: bool = True,
    capture_output: bool = True,
) -> Callable[[F], F]:
    """Trace every call; inside, `vane.update_current_generation(usage=..., ...)` adds to the span."""

    def decorate(fn: F) -> F:
        span_name = name or fn.__name__

        def opened(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            call_input = _call_input(fn, args, kwargs) if capture_input else None
            return generation_span(
                get_tracer(), span_name, as_type=as_type, model=model, prompt=prompt, input=call_input
            )

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with opened(args, kwargs) as generation:
                    result = await fn(*args, **kwargs)
                    if capture_output and result is not None:
                        generation.update(output=result)
                    return result

            return cast(F, run_async)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with opened(args, kwargs) as generation:
                result = fn(*args, **kwargs)
                if capture_output and result is not None:
                    generation.update(output=result)
                return result

        return cast(F, run)

    return decorate

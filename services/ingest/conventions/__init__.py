"""The conventions Vane understands, in order of precedence: when two name the same canonical
field, the earlier one wins (explicit observation attributes before generic `gen_ai.*` ones)."""

from __future__ import annotations

from services.ingest.conventions.convention import Convention
from services.ingest.conventions.genai import GENAI
from services.ingest.conventions.langfuse import ABV, LANGFUSE
from services.ingest.conventions.openinference import OPENINFERENCE, OPENINFERENCE_PARAMETERS
from services.ingest.conventions.traceai import TRACEAI, TRACEAI_PARAMETERS
from services.ingest.conventions.traceloop import TRACELOOP

REGISTRY: tuple[Convention, ...] = (
    LANGFUSE,
    ABV,
    TRACEAI,
    OPENINFERENCE,
    TRACELOOP,
    GENAI,
    # Models named only inside a JSON of request parameters: after every attribute that names one.
    TRACEAI_PARAMETERS,
    OPENINFERENCE_PARAMETERS,
)

__all__ = ["REGISTRY", "Convention"]

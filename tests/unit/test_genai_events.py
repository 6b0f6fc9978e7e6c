"""GenAI events from OTLP logs, as OpenTelemetry's SDK encodes them: the whole exchange in one
`gen_ai.client.inference.operation.details` event, or one event per message; only records of a
span count, and a span's input and output come out as the JSON messages a span would carry."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from services.common.errors import Invalid
from services.ingest.genai_events import assemble, decode_logs, pieces

TRACE, SPAN = bytes(range(1, 17)), bytes(range(1, 9))
INPUT = [{"role": "user", "parts": [{"type": "text", "content": "Where is my order?"}]}]
OUTPUT = [{"role": "assistant", "parts": [{"type": "text", "content": "On its way."}], "finish_reason": "stop"}]


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _request(*records: LogRecord) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.extend(records)
    return request


def _body(**fields: str) -> AnyValue:
    return AnyValue(kvlist_value=KeyValueList(values=[_kv(k, v) for k, v in fields.items()]))


def test_an_operation_details_event_gives_the_span_its_input_and_output() -> None:
    record = LogRecord(
        time_unix_nano=5,
        trace_id=TRACE,
        span_id=SPAN,
        event_name="gen_ai.client.inference.operation.details",
        attributes=[_kv("gen_ai.input.messages", json.dumps(INPUT)), _kv("gen_ai.output.messages", json.dumps(OUTPUT))],
    )
    found = pieces(decode_logs(_request(record).SerializeToString(), "application/x-protobuf"))
    content = assemble(found[(TRACE, SPAN)])
    assert (json.loads(content["input"]), json.loads(content["output"])) == (INPUT, OUTPUT)


def test_one_event_per_message_is_put_together_in_time_order_across_requests() -> None:
    user = LogRecord(
        time_unix_nano=2, trace_id=TRACE, span_id=SPAN, event_name="gen_ai.user.message", body=_body(content="Hi")
    )
    system = LogRecord(
        time_unix_nano=1,
        trace_id=TRACE,
        span_id=SPAN,
        event_name="gen_ai.system.message",
        body=_body(content="Be brief."),
    )
    choice_body = AnyValue(
        kvlist_value=KeyValueList(
            values=[
                _kv("finish_reason", "stop"),
                KeyValue(key="message", value=_body(role="assistant", content="Hello")),
            ]
        )
    )
    choice = LogRecord(time_unix_nano=3, trace_id=TRACE, span_id=SPAN, event_name="gen_ai.choice", body=choice_body)
    first, second = pieces(_request(user, choice)), pieces(_request(system))
    content = assemble(first[(TRACE, SPAN)] + second[(TRACE, SPAN)])
    assert json.loads(content["input"]) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert json.loads(content["output"]) == [{"role": "assistant", "content": "Hello"}]


def test_records_of_no_span_and_other_logs_are_left_out() -> None:
    orphan = LogRecord(event_name="gen_ai.user.message", body=_body(content="Hi"))
    plain = LogRecord(trace_id=TRACE, span_id=SPAN, body=AnyValue(string_value="GET /healthz 200"))
    assert pieces(_request(orphan, plain)) == {}


def test_otlp_json_logs_with_hex_ids_decode_as_protobuf_does() -> None:
    record = LogRecord(trace_id=TRACE, span_id=SPAN, event_name="gen_ai.user.message", body=_body(content="Hi"))
    document = json_format.MessageToDict(_request(record))
    for log in document["resourceLogs"][0]["scopeLogs"][0]["logRecords"]:
        log["traceId"], log["spanId"] = TRACE.hex(), SPAN.hex()
    decoded = decode_logs(json.dumps(document).encode(), "application/json")
    assert pieces(decoded) == pieces(_request(record))


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"", "application/json"),
        (b"\xff\x00", "application/x-protobuf"),
        (b"{}", "text/plain"),
        (b"[1]", "application/json"),
    ],
)
def test_a_bad_logs_body_is_refused_with_the_reason(body: bytes, content_type: str) -> None:
    with pytest.raises(Invalid):
        decode_logs(body, content_type)

"""What each kind of channel is sent: a Standard Webhooks request, a Slack incoming-webhook message,
or an Alertmanager alert. Bodies are rendered when a notification is queued (and stored in the
outbox), headers and Alertmanager's `endsAt` when it is sent."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from standardwebhooks.webhooks import Webhook

from services.alert.rules import signing_key

_ICONS = {"firing": ":rotating_light:", "resolved": ":white_check_mark:", "disabled": ":no_entry:"}
_ALERTNAMES = {"regression": "VaneRegression", "rollback": "VaneRollback", "channel_disabled": "VaneChannelDisabled"}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def labels_of(event: dict[str, Any]) -> dict[str, str]:
    """The event's labels: what silences match and Alertmanager routes on (all strings)."""
    labels = {
        "alertname": event["rule"]["name"] if event.get("rule") else _ALERTNAMES.get(event["kind"], event["kind"]),
        "severity": event["severity"],
        "kind": event["kind"],
        "vane_project": str(event["project_id"]),
    }
    if event.get("rule"):
        labels["rule"] = event["rule"]["id"]
        labels["metric"] = event["rule"]["metric"]
        for name, value in event["rule"].get("scope", {}).items():
            labels[name] = str(value)
    decision = event.get("decision")
    if decision:
        for name in ("prompt", "label", "metric", "from_version", "to_version"):
            if decision.get(name) is not None:
                labels[name] = str(decision[name])
    return labels


def summary(event: dict[str, Any]) -> str:
    """One line a person reads first: what, where, how far."""
    state = event["state"].upper()
    if event.get("rule"):
        rule = event["rule"]
        scope = ", ".join(f"{k}={v}" for k, v in rule.get("scope", {}).items()) or "all traffic"
        value = event.get("value")
        shown = "no data" if value is None else f"{value:.6g}"
        level = " (warning level)" if event.get("level") == "warning" else ""
        return f"[{state}{level}] {rule['name']}: {rule['statistic']} {rule['metric']} of {scope} is {shown}"
    decision = event.get("decision") or {}
    if event["kind"] in ("regression", "rollback"):
        what = "rolled back" if event["kind"] == "rollback" else "regressed"
        return (
            f"[{state}] {decision.get('prompt')} ({decision.get('label')}) {what}: version "
            f"{decision.get('to_version')} against {decision.get('from_version')} on {decision.get('metric')}"
        )
    return f"[{state}] {event.get('message', event['kind'])}"


def webhook_body(event: dict[str, Any]) -> dict[str, Any]:
    """Standard Webhooks' recommended payload: `type`, `timestamp`, `data`."""
    return {"type": f"{event['kind']}.{event['state']}", "timestamp": event["at"], "data": event}


def slack_body(event: dict[str, Any]) -> dict[str, Any]:
    icon = _ICONS.get(event["state"], ":bell:")
    fields = [f"*Severity*\n{event['severity']}", f"*State*\n{event['state']}"]
    details = event.get("details") or {}
    for name in ("threshold", "baseline", "change_pct", "z", "expected", "n", "p_value"):
        if details.get(name) is not None:
            value = details[name]
            fields.append(f"*{name}*\n{value:.6g}" if isinstance(value, float) else f"*{name}*\n{value}")
    comparison = (event.get("decision") or {}).get("comparison") or {}
    for name in ("verdict", "relative_difference", "p_value"):
        if comparison.get(name) is not None:
            fields.append(f"*{name}*\n{comparison[name]}")
    if (event.get("decision") or {}).get("reason"):
        fields.append(f"*reason*\n{event['decision']['reason']}")
    text = f"{icon} {summary(event)}"
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields[:10]]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Vane · {event['at']}"}]},
        ],
    }


def alertmanager_body(event: dict[str, Any], generator_url: str) -> dict[str, Any]:
    """One alert of Alertmanager's POST /api/v2/alerts; `endsAt` is set when it is sent (`finish`)."""
    return {
        "labels": labels_of(event),
        "annotations": {"summary": summary(event), "description": json.dumps(event.get("details") or {})},
        "startsAt": event.get("started_at") or event["at"],
        "endsAt": event["at"] if event["state"] == "resolved" else None,
        "generatorURL": generator_url,
    }


def render(channel: dict[str, Any], event: dict[str, Any], generator_url: str) -> dict[str, Any]:
    kind = channel["type"]
    if kind == "slack":
        return slack_body(event)
    if kind == "alertmanager":
        return alertmanager_body(event, generator_url)
    return webhook_body(event)


def alertmanager_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/api/v2/alerts") else url + "/api/v2/alerts"


def request(
    channel: dict[str, Any], message_id: str, body: dict[str, Any], now: datetime, resend_seconds: float
) -> tuple[str, bytes, dict[str, str]]:
    """(URL, body bytes, headers) of one attempt. A webhook is signed anew at each attempt (its
    timestamp is the attempt's), under the same webhook-id."""
    headers = {"content-type": "application/json", "user-agent": "vane-alerts/0.1"}
    if channel["type"] == "alertmanager":
        alert = dict(body)
        if alert.get("endsAt") is None:  # firing: Prometheus' rule, endsAt 4 resend intervals ahead
            alert["endsAt"] = iso(now + timedelta(seconds=4 * resend_seconds))
        return alertmanager_url(channel["url"]), json.dumps([alert]).encode(), headers
    data = json.dumps(body, separators=(",", ":"))
    if channel["type"] == "webhook":
        signature = Webhook(signing_key(channel["secret"])).sign(message_id, now, data)
        headers |= {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
    return channel["url"], data.encode(), headers

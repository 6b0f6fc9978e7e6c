"""A line diff of two prompt versions: their prompt text and their config."""

from __future__ import annotations

import difflib
import json
from typing import Any


def body_lines(version: dict[str, Any]) -> list[str]:
    """A version's prompt as lines: text as it is; chat as `role: content`, placeholders as `[[name]]`."""
    body = version["prompt"]
    if isinstance(body, str):
        return body.splitlines()
    lines: list[str] = []
    for message in body:
        if message.get("type") == "placeholder":
            lines.append(f"[[placeholder: {message['name']}]]")
        else:
            lines.extend(f"{message['role']}: {line}" for line in (str(message["content"]).splitlines() or [""]))
    return lines


def config_lines(version: dict[str, Any]) -> list[str]:
    return json.dumps(version["config"], indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def diff_versions(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Unified diffs (lists of lines) of prompt and config from `old` to `new`."""
    name = new["name"]
    a, b = f"{name} v{old['version']}", f"{name} v{new['version']}"
    prompt = list(difflib.unified_diff(body_lines(old), body_lines(new), a, b, lineterm=""))
    config = list(difflib.unified_diff(config_lines(old), config_lines(new), f"{a} config", f"{b} config", lineterm=""))
    return {
        "name": name,
        "from": old["version"],
        "to": new["version"],
        "changed": bool(prompt or config or old["type"] != new["type"]),
        "type": {"from": old["type"], "to": new["type"]},
        "prompt": prompt,
        "config": config,
    }

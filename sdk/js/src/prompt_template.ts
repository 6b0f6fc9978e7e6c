/**
 * Prompt bodies: the `{{name}}` variables they hold, and filling them in, exactly as the Python
 * SDK and the registry do (tests/vectors/prompts.json holds the cases all of them must pass).
 *
 * A text prompt is a string; a chat prompt is a list of `{role, content}` messages and
 * `{type: "placeholder", name}` slots that compile fills with lists of messages.
 */
import { pythonStr } from "./python_str.js";

export type Message = Record<string, unknown>;
export type PromptBody = string | Message[];
export type Variables = Readonly<Record<string, unknown>>;

// Python's `\s` in a str pattern (str.isspace): JavaScript's `\s` adds U+FEFF and lacks U+001C–U+001F and U+0085.
const SPACE = "[\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const VARIABLE_SOURCE = `\\{\\{${SPACE}*([A-Za-z_][A-Za-z0-9_]*)${SPACE}*\\}\\}`;

function variablePattern(): RegExp {
  return new RegExp(VARIABLE_SOURCE, "g");
}

export function isPlaceholder(message: Message): boolean {
  return message["type"] === "placeholder";
}

function contentOf(message: Message): string {
  return "content" in message ? pythonStr(message["content"]) : "";
}

/** The distinct variable names of a text or chat body, in order of first appearance. */
export function variablesOf(body: PromptBody): string[] {
  const texts = typeof body === "string" ? [body] : body.filter((m) => !isPlaceholder(m)).map(contentOf);
  const seen = new Set<string>();
  for (const text of texts) {
    for (const match of text.matchAll(variablePattern())) seen.add(match[1] as string);
  }
  return [...seen];
}

/** Replace each `{{name}}` that has a value; leave the others as they are. (An `undefined` value
 * counts as none, JSON and Python having no such value; `null` is written as Python's `None`.) */
export function fill(text: string, values: Variables): string {
  return text.replace(variablePattern(), (whole: string, name: string) =>
    Object.hasOwn(values, name) && values[name] !== undefined ? pythonStr(values[name]) : whole,
  );
}

/** A text body becomes a string; a chat body a list of messages, each placeholder replaced by
 * the list of messages given under its name (an unfilled placeholder stays as it is). */
export function compileBody(body: PromptBody, values: Variables): PromptBody {
  if (typeof body === "string") return fill(body, values);
  const out: Message[] = [];
  for (const message of body) {
    if (isPlaceholder(message)) {
      const name = "name" in message ? pythonStr(message["name"]) : "";
      const filler = Object.hasOwn(values, name) ? values[name] : undefined;
      if (Array.isArray(filler)) out.push(...filler.map((m) => ({ ...(m as Message) })));
      else out.push({ ...message });
      continue;
    }
    out.push({ ...message, content: fill(contentOf(message), values) });
  }
  return out;
}

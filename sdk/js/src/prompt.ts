/** The `Prompt` an app gets from `Vane.getPrompt`: one version of a prompt, ready to compile. */
import { type PromptBody, type Variables, compileBody, variablesOf } from "./prompt_template.js";

export type PromptType = "text" | "chat";
export type PromptConfig = Record<string, unknown>;

export interface PromptFields {
  name: string;
  version: number; // 0 for a fallback
  type: PromptType;
  prompt: PromptBody;
  config?: PromptConfig;
  labels?: readonly string[];
  tags?: readonly string[];
  variables?: readonly string[];
  commitMessage?: string;
  isFallback?: boolean;
  label?: string | null;
}

export class Prompt {
  readonly name: string;
  readonly version: number;
  readonly type: PromptType;
  readonly prompt: PromptBody;
  readonly config: PromptConfig;
  readonly labels: readonly string[];
  readonly tags: readonly string[];
  readonly variables: readonly string[];
  readonly commitMessage: string;
  readonly isFallback: boolean;
  /** The label this fetch asked for (production when none was named); null when fetched by version.
   * Runs record it, not labels[0]: a version can hold several labels, a split label serves several. */
  readonly label: string | null;

  constructor(fields: PromptFields) {
    this.name = fields.name;
    this.version = fields.version;
    this.type = fields.type;
    this.prompt = fields.prompt;
    this.config = fields.config ?? {};
    this.labels = Object.freeze([...(fields.labels ?? [])]);
    this.tags = Object.freeze([...(fields.tags ?? [])]);
    this.variables = Object.freeze([...(fields.variables ?? [])]);
    this.commitMessage = fields.commitMessage ?? "";
    this.isFallback = fields.isFallback ?? false;
    this.label = fields.label ?? null;
    Object.freeze(this);
  }

  /** The caller's own prompt, used when the registry cannot be asked: version 0, linked to nothing. */
  static fallback(name: string, body: PromptBody, config?: PromptConfig): Prompt {
    const type: PromptType = typeof body === "string" ? "text" : "chat";
    return new Prompt({ name, version: 0, type, prompt: body, config: { ...config }, variables: variablesOf(body), isFallback: true });
  }

  /** A string for a text prompt; for a chat prompt a list of messages, with each placeholder
   * filled from the list of messages passed under its name. */
  /** This prompt as served by a label. */
  withLabel(label: string): Prompt {
    return new Prompt({ ...this, label });
  }

  compile(values: Variables = {}): PromptBody {
    return compileBody(this.prompt, values);
  }
}

/**
 * A generation: one LLM call as a span, with model, input, output, usage, cost, time to first
 * token and the prompt version that produced it. Attribute names are traceAI's and OpenTelemetry
 * GenAI's, the same the Python SDK sets, so any Vane (or traceAI-aware) backend reads them.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { performance } from "node:perf_hooks";

import { type Attributes, type Span, SpanStatusCode, type Tracer, context, trace } from "@opentelemetry/api";

const USAGE_KEYS: Readonly<Record<string, string>> = {
  inputTokens: "gen_ai.usage.input_tokens",
  promptTokens: "gen_ai.usage.input_tokens",
  input_tokens: "gen_ai.usage.input_tokens",
  prompt_tokens: "gen_ai.usage.input_tokens",
  input: "gen_ai.usage.input_tokens",
  outputTokens: "gen_ai.usage.output_tokens",
  completionTokens: "gen_ai.usage.output_tokens",
  output_tokens: "gen_ai.usage.output_tokens",
  completion_tokens: "gen_ai.usage.output_tokens",
  output: "gen_ai.usage.output_tokens",
  totalTokens: "gen_ai.usage.total_tokens",
  total_tokens: "gen_ai.usage.total_tokens",
  total: "gen_ai.usage.total_tokens",
  cachedInputTokens: "gen_ai.usage.cache_read_tokens",
  cacheReadInputTokens: "gen_ai.usage.cache_read_tokens",
  cached_input_tokens: "gen_ai.usage.cache_read_tokens",
  cache_read_input_tokens: "gen_ai.usage.cache_read_tokens",
};
const KINDS: Readonly<Record<string, string>> = { generation: "LLM", span: "CHAIN", chain: "CHAIN", tool: "TOOL", agent: "AGENT" };

export type ObservationType = "generation" | "span" | "chain" | "tool" | "agent";
export type Usage = Readonly<Record<string, number | null | undefined>>;

/** What tracing needs of a prompt: a Prompt from `getPrompt`, or anything shaped like one. */
export interface PromptLink {
  name: string;
  version: number;
  label?: string | null;
  isFallback?: boolean;
}

export interface GenerationUpdate {
  output?: unknown;
  usage?: Usage;
  cost?: number;
  model?: string;
  metadata?: Readonly<Record<string, unknown>>;
  input?: unknown;
}

export interface GenerationOptions {
  name: string;
  asType?: ObservationType;
  model?: string;
  prompt?: PromptLink | null;
  input?: unknown;
  modelParameters?: Readonly<Record<string, unknown>>;
  metadata?: Readonly<Record<string, unknown>>;
  sessionId?: string;
  userId?: string;
}

export function asText(value: unknown): string {
  if (typeof value === "string") return value;
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) ?? String(value);
}

/** A served prompt's name, version and label; a fallback prompt (or none) links nothing. */
export function promptAttributes(prompt: PromptLink | null | undefined): Attributes {
  if (!prompt || prompt.isFallback || !prompt.version) return {};
  const out: Attributes = { "gen_ai.prompt.template.name": prompt.name, "gen_ai.prompt.template.version": prompt.version };
  const label = prompt.label;
  if (label) out["gen_ai.prompt.template.label"] = label;
  return out;
}

/** The live span of one LLM call; `update` adds what is known as it becomes known. */
export class Generation {
  readonly span: Span;
  private readonly startMs = performance.now();
  private firstTokenMs: number | undefined;

  constructor(span: Span) {
    this.span = span;
  }

  get traceId(): string {
    return this.span.spanContext().traceId;
  }

  get spanId(): string {
    return this.span.spanContext().spanId;
  }

  update(fields: GenerationUpdate): this {
    const { span } = this;
    if (fields.output !== undefined && fields.output !== null) span.setAttribute("output.value", asText(fields.output));
    if (fields.input !== undefined && fields.input !== null) span.setAttribute("input.value", asText(fields.input));
    for (const [key, count] of Object.entries(fields.usage ?? {})) {
      const attribute = USAGE_KEYS[key];
      if (attribute !== undefined && typeof count === "number") span.setAttribute(attribute, Math.trunc(count));
    }
    if (typeof fields.cost === "number") span.setAttribute("gen_ai.cost.total", fields.cost);
    if (fields.model) span.setAttribute("gen_ai.request.model", fields.model);
    for (const [key, value] of Object.entries(fields.metadata ?? {})) span.setAttribute(`metadata.${key}`, asText(value));
    return this;
  }

  /** Call when the first token of a streamed answer arrives: the span records the time to it (ms). */
  firstToken(): void {
    if (this.firstTokenMs === undefined) {
      this.firstTokenMs = performance.now();
      this.span.setAttribute("gen_ai.server.time_to_first_token", this.firstTokenMs - this.startMs);
    }
  }
}

const current = new AsyncLocalStorage<Generation>();

function spanAttributes(options: GenerationOptions): Attributes {
  const asType = options.asType ?? "generation";
  const attributes: Attributes = { "gen_ai.span.kind": KINDS[asType] ?? "CHAIN", ...promptAttributes(options.prompt) };
  if (asType === "generation") attributes["gen_ai.operation.name"] = "chat";
  if (options.model) attributes["gen_ai.request.model"] = options.model;
  if (options.input !== undefined && options.input !== null) attributes["input.value"] = asText(options.input);
  if (options.modelParameters && Object.keys(options.modelParameters).length) {
    attributes["gen_ai.request.parameters"] = asText(options.modelParameters);
  }
  if (options.sessionId) attributes["session.id"] = options.sessionId;
  if (options.userId) attributes["user.id"] = options.userId;
  return attributes;
}

function failed(span: Span, error: unknown): void {
  const exception = error instanceof Error ? error : new Error(String(error));
  span.recordException(exception);
  span.setStatus({ code: SpanStatusCode.ERROR, message: `${exception.name}: ${exception.message}` });
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null)?.then === "function";
}

/** Run `fn` inside a span (sync or async); an error marks the span as failed and is thrown on. */
export function withGeneration<T>(tracer: Tracer, options: GenerationOptions, fn: (generation: Generation) => T): T {
  const span = tracer.startSpan(options.name, { attributes: spanAttributes(options) });
  const generation = new Generation(span).update({ metadata: options.metadata });
  const run = (): T => current.run(generation, () => fn(generation));
  let result: T;
  try {
    result = context.with(trace.setSpan(context.active(), span), run);
  } catch (error) {
    failed(span, error);
    span.end();
    throw error;
  }
  if (!isThenable(result)) {
    span.end();
    return result;
  }
  return Promise.resolve(result).then(
    (value) => {
      span.end();
      return value;
    },
    (error: unknown) => {
      failed(span, error);
      span.end();
      throw error;
    },
  ) as T;
}

/** The generation of the innermost `startGeneration` or `observe` call, if any. */
export function currentGeneration(): Generation | undefined {
  return current.getStore();
}

/** `currentGeneration()?.update(...)`, doing nothing outside a generation. */
export function updateCurrentGeneration(fields: GenerationUpdate): void {
  current.getStore()?.update(fields);
}

/**
 * `register(...)`: an OpenTelemetry TracerProvider that exports to Vane's ingest.
 *
 * The resource carries what Future AGI's traceAI (and Vane's Python SDK) put there: project_name,
 * project_type, project_version_name, eval_tags as JSON and metadata as JSON, so Vane reads spans
 * from any of the SDKs the same way.
 */
import { type Tracer, context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { defaultResource, resourceFromAttributes } from "@opentelemetry/resources";
import {
  BatchSpanProcessor,
  type ReadableSpan,
  SimpleSpanProcessor,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";

import { resolveConfig } from "./config.js";

export const ProjectType = { EXPERIMENT: "experiment", OBSERVE: "observe" } as const;
export type ProjectType = (typeof ProjectType)[keyof typeof ProjectType];

/** Which evaluator scores which spans, and where its inputs are in a span: serialised into the
 * resource attribute `eval_tags` with the same keys as traceAI's EvalTag. */
export interface EvalTag {
  evalName: string;
  value?: string; // the span kind it applies to (LLM, CHAIN, TOOL, …); default LLM
  mapping?: Record<string, string>; // evaluator input → span attribute path
  config?: Record<string, unknown>;
  customEvalName?: string;
  model?: string;
  type?: string;
}

export interface RegisterOptions {
  projectType?: ProjectType;
  projectName?: string;
  projectVersionName?: string;
  evalTags?: ReadonlyArray<EvalTag>;
  metadata?: Record<string, unknown>;
  secretKey?: string;
  endpoint?: string; // default VANE_OTLP_ENDPOINT
  batch?: boolean; // default true
  setGlobalTracerProvider?: boolean; // default true
  spanProcessors?: SpanProcessor[]; // more processors beside the export to Vane (a console exporter, …)
}

export function evalTagDict(tag: EvalTag): Record<string, unknown> {
  return {
    type: tag.type ?? "OBSERVATION_SPAN_TYPE",
    value: tag.value ?? "LLM",
    eval_name: tag.evalName,
    config: { ...tag.config },
    mapping: { ...tag.mapping },
    custom_eval_name: tag.customEvalName || tag.evalName,
    model: tag.model ?? "",
  };
}

/** Counts ended spans, so the exit hook flushes only when something is left to send. */
class EndedSpans implements SpanProcessor {
  ended = 0;
  onStart(): void {}
  onEnd(_span: ReadableSpan): void {
    this.ended++;
  }
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

let provider: NodeTracerProvider | undefined;
let contextManagerSet = false;

/** The resource's attributes, checked: what traceAI's register puts there. */
export function resourceAttributes(options: RegisterOptions): Record<string, string> {
  const kind = options.projectType ?? ProjectType.EXPERIMENT;
  if (kind !== ProjectType.EXPERIMENT && kind !== ProjectType.OBSERVE) {
    throw new RangeError(`projectType is "experiment" or "observe", not ${JSON.stringify(kind)}`);
  }
  const tags = (options.evalTags ?? []).map(evalTagDict);
  if (kind === ProjectType.OBSERVE && tags.length) {
    throw new RangeError("evalTags are for EXPERIMENT projects; an OBSERVE project is scored by rules");
  }
  const names = tags.map((t) => t["custom_eval_name"]);
  if (new Set(names).size !== names.length) throw new RangeError(`two eval tags share a name: ${JSON.stringify(names)}`);
  const projectName = options.projectName ?? "default";
  return {
    "service.name": projectName,
    project_name: projectName,
    project_type: kind,
    project_version_name: options.projectVersionName ?? "",
    eval_tags: JSON.stringify(tags),
    metadata: JSON.stringify(options.metadata ?? {}),
  };
}

/** A TracerProvider whose spans are batched to VANE_OTLP_ENDPOINT (+ /v1/traces) with the key; it
 * becomes Vane's provider (and OpenTelemetry's global one unless told otherwise), and is flushed
 * when the process has nothing left to do. */
export function register(options: RegisterOptions = {}): NodeTracerProvider {
  const resource = defaultResource().merge(resourceFromAttributes(resourceAttributes(options)));
  const config = resolveConfig({ secretKey: options.secretKey, otlpEndpoint: options.endpoint });
  const exporter = new OTLPTraceExporter({
    url: `${config.otlpEndpoint}/v1/traces`,
    headers: { Authorization: `Bearer ${config.secretKey}` },
  });
  const ended = new EndedSpans();
  const made = new NodeTracerProvider({
    resource,
    spanProcessors: [
      options.batch === false ? new SimpleSpanProcessor(exporter) : new BatchSpanProcessor(exporter),
      ended,
      ...(options.spanProcessors ?? []),
    ],
  });
  provider = made;
  if (options.setGlobalTracerProvider !== false) {
    made.register(); // also the async context manager, so spans nest across awaits
  } else if (!contextManagerSet) {
    // spans still nest across awaits without taking over the app's global provider
    contextManagerSet = context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  }
  let flushedAt = 0;
  process.on("beforeExit", () => {
    if (ended.ended > flushedAt) {
      flushedAt = ended.ended;
      void made.forceFlush().catch(() => undefined);
    }
  });
  return made;
}

/** The provider of the last `register` call, if any. */
export function currentProvider(): NodeTracerProvider | undefined {
  return provider;
}

/** Vane's tracer: from the registered provider, else OpenTelemetry's global one. */
export function getTracer(): Tracer {
  return provider ? provider.getTracer("vane") : trace.getTracer("vane");
}

/** Export every finished span now; true when all were sent in time. */
export async function flush(timeoutMs = 30_000): Promise<boolean> {
  const target = provider ?? (trace.getTracerProvider() as { forceFlush?: () => Promise<void> });
  if (typeof target.forceFlush !== "function") return true;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([target.forceFlush().then(() => true), timeout]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/** `Vane`: one client for both halves of the SDK, prompts (prompts.ts) and tracing. */
import type { Tracer } from "@opentelemetry/api";

import { type ClientConfig, type VaneOptions, resolveConfig } from "./config.js";
import type { Prompt } from "./prompt.js";
import type { PromptBody } from "./prompt_template.js";
import { type CreatePromptOptions, type GetPromptOptions, Prompts } from "./prompts.js";
import { type ScoreOptions, sendScore } from "./scores.js";
import { type Generation, type GenerationOptions, withGeneration } from "./tracing_generation.js";
import { currentProvider, flush, register } from "./tracing_register.js";

export class Vane {
  readonly config: ClientConfig;
  private readonly prompts: Prompts;
  private tracer: Tracer | undefined;

  /** Reads VANE_SECRET_KEY, VANE_PUBLIC_KEY, VANE_REGISTRY, VANE_OTLP_ENDPOINT and VANE_API_URL
   * where no option is given. */
  constructor(options: VaneOptions = {}) {
    this.config = resolveConfig(options);
    this.prompts = new Prompts(this.config, options.watch ?? true);
  }

  /** A prompt version from the in-process cache (kept current by WatchPrompts), else from the
   * registry; with the registry unreachable and nothing cached, `fallback` (isFallback, version 0). */
  getPrompt(name: string, options?: GetPromptOptions): Promise<Prompt> {
    return this.prompts.get(name, options);
  }

  createPrompt(name: string, prompt: PromptBody, options?: CreatePromptOptions): Promise<Prompt> {
    return this.prompts.create(name, prompt, options);
  }

  setLabels(name: string, version: number, labels: readonly string[]): Promise<Prompt> {
    return this.prompts.setLabels(name, version, labels);
  }

  setLabelSplit(name: string, label: string, weights: Readonly<Record<number, number>>): Promise<Record<number, number>> {
    return this.prompts.setLabelSplit(name, label, weights);
  }

  /** Resolves true once the WatchPrompts stream is open (it opens with the first fetch). */
  watching(timeoutMs?: number): Promise<boolean> {
    return this.prompts.watching(timeoutMs);
  }

  /** A span for one LLM call around `fn` (sync or async); a prompt served by Vane links the call to
   * its version (a fallback prompt does not). Call `gen.update({ output, usage, cost })` and
   * `gen.firstToken()` inside. */
  startGeneration<T>(options: GenerationOptions, fn: (generation: Generation) => T): T {
    return withGeneration(this.getTracer(), { asType: "generation", ...options }, fn);
  }

  /** Send one score to Vane; resolves to its id (a retry with the same id is stored once). */
  score(options: ScoreOptions): Promise<string> {
    return sendScore(this.config, options);
  }

  /** Export every finished span now. */
  flush(timeoutMs?: number): Promise<boolean> {
    return flush(timeoutMs);
  }

  /** Flush, and end the WatchPrompts stream (which otherwise keeps the process alive). */
  async close(): Promise<void> {
    this.prompts.close();
    await this.flush();
  }

  private getTracer(): Tracer {
    if (this.tracer === undefined) {
      const provider = currentProvider() ?? register({ secretKey: this.config.secretKey, endpoint: this.config.otlpEndpoint });
      this.tracer = provider.getTracer("vane");
    }
    return this.tracer;
  }
}

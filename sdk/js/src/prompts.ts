/** The prompt half of the SDK: `getPrompt` from an in-process cache kept current by WatchPrompts,
 * with the caller's fallback when the registry cannot be reached; and the registry's writes. */
import { performance } from "node:perf_hooks";

import type { ClientConfig } from "./config.js";
import { Prompt, type PromptConfig, type PromptType } from "./prompt.js";
import { Entry, PromptCache, cacheKey, keyParts } from "./prompt_cache.js";
import type { PromptBody } from "./prompt_template.js";
import { PromptWatcher } from "./prompt_watch.js";
import {
  PromptError,
  PromptNotFound,
  RegistryClient,
  type PromptVersionMsg,
  type WatchPromptsResponseMsg,
  promptOf,
} from "./registry_client.js";

const DEFAULT_TTL_SECONDS = 60;

export interface GetPromptOptions {
  label?: string; // default "production" (when no version is given)
  version?: number;
  fallback?: PromptBody; // served, as version 0, when the registry is unreachable and nothing is cached
  cacheTtlSeconds?: number; // default 60; 0 always asks the registry
  stickyKey?: string; // for split labels: the same key gets the same version
}

export interface CreatePromptOptions {
  type?: PromptType;
  config?: PromptConfig;
  labels?: readonly string[];
  tags?: readonly string[];
  commitMessage?: string;
}

export class Prompts {
  private readonly cache = new PromptCache();
  private readonly entries = this.cache.entries;
  private readonly registry: RegistryClient;
  private watcher: PromptWatcher | undefined;

  constructor(
    config: ClientConfig,
    private readonly watch: boolean,
  ) {
    this.registry = new RegistryClient(config.registry, config.secretKey);
  }

  close(): void {
    this.watcher?.stop();
    this.registry.close();
  }

  /** Resolves true once the WatchPrompts stream is open (it opens with the first fetch). */
  watching(timeoutMs = 10_000): Promise<boolean> {
    return this.watcher ? this.watcher.whenConnected(timeoutMs) : Promise.resolve(false);
  }

  // -- reads ----------------------------------------------------------------------------------------
  /** A prompt version: from the cache when held (a stale one is served at once and refreshed in the
   * background), else from the registry; with the registry unreachable and nothing cached, the
   * fallback as a Prompt with isFallback true and version 0, or a RegistryUnavailable error. */
  async get(name: string, options: GetPromptOptions = {}): Promise<Prompt> {
    const key = cacheKey(name, options.label, options.version);
    const ttl = options.cacheTtlSeconds ?? DEFAULT_TTL_SECONDS;
    const entry = this.entries.get(key);
    if (entry !== undefined && ttl > 0) {
      if (entry.freshUntil < performance.now()) this.refreshLater(key, ttl);
      return entry.single ?? entry.pick(options.stickyKey);
    }
    return this.fetchNow(key, ttl, options);
  }

  private async fetchNow(key: string, ttl: number, options: GetPromptOptions): Promise<Prompt> {
    this.ensureWatching();
    let entry: Entry;
    try {
      entry = await this.fetch(key, ttl);
    } catch (error) {
      if (!(error instanceof PromptError)) throw error;
      const stale = this.entries.get(key);
      if (stale !== undefined && !(error instanceof PromptNotFound)) return stale.pick(options.stickyKey);
      if (options.fallback !== undefined) {
        process.emitWarning(`serving the fallback of prompt '${keyParts(key).name}': ${error.message}`, "VaneWarning");
        return Prompt.fallback(keyParts(key).name, options.fallback);
      }
      throw error;
    }
    return entry.pick(options.stickyKey);
  }

  /** Ask the registry and cache the answer; reject with a PromptError that says what went wrong. */
  private async fetch(key: string, ttlSeconds: number): Promise<Entry> {
    const { name, label, version } = keyParts(key);
    const response = await this.registry.getPrompt(name, label, version);
    const choices: Array<readonly [Prompt, number]> = response.split.length
      ? response.split.map((w) => [promptOf(w.prompt ?? emptyVersion()), w.weight] as const)
      : [[promptOf(response.prompt ?? emptyVersion()), 100] as const];
    const entry = new Entry(performance.now() + ttlSeconds * 1000, response.resolved_label, choices);
    const held = this.entries.get(key);
    if (held !== undefined && held.sameAnswer(entry)) {
      // Nothing changed (a watch event that raced our first fetch): the app keeps its objects.
      held.freshUntil = entry.freshUntil;
      return held;
    }
    this.cache.put(key, entry);
    return entry;
  }

  private refreshLater(key: string, ttl: number): void {
    if (this.cache.beginRefresh(key)) void this.refresh(key, ttl);
  }

  /** Fetch a cached key again: gone from the registry evicts it; unreachable keeps it, stale. */
  private async refresh(key: string, ttl?: number): Promise<void> {
    try {
      const current = this.entries.get(key);
      const seconds = ttl ?? (current ? Math.max((current.freshUntil - performance.now()) / 1000, DEFAULT_TTL_SECONDS) : DEFAULT_TTL_SECONDS);
      await this.fetch(key, seconds);
    } catch (error) {
      if (error instanceof PromptNotFound) this.cache.evict(key);
      else this.cache.markStale(key);
    } finally {
      this.cache.endRefresh(key);
    }
  }

  // -- the watch ----------------------------------------------------------------------------------
  private ensureWatching(): void {
    if (this.watcher !== undefined || !this.watch) return;
    this.watcher = new PromptWatcher(
      () => this.registry.watchPrompts(),
      (event) => this.changed(event),
      () => this.resync(),
    );
    this.watcher.start();
  }

  /** A version or label of this project changed: refetch what we hold of that prompt now. */
  private async changed(event: WatchPromptsResponseMsg): Promise<void> {
    const refreshes: Array<Promise<void>> = [];
    for (const key of this.cache.keysOf(event.name)) {
      const { version } = keyParts(key);
      if (version) {
        // a version is immutable, so only its removal matters
        if (event.kind === "version_removed" && version === event.version) this.cache.evict(key);
        continue;
      }
      this.cache.beginRefresh(key); // even while one runs: it may have started before the move
      refreshes.push(this.refresh(key));
    }
    await Promise.all(refreshes);
  }

  private async resync(): Promise<void> {
    const refreshes = this.cache
      .keysOf()
      .filter((key) => !keyParts(key).version && this.cache.beginRefresh(key))
      .map((key) => this.refresh(key));
    await Promise.all(refreshes);
  }

  private forget(name: string): void {
    for (const key of this.cache.keysOf(name)) if (!keyParts(key).version) this.cache.evict(key);
  }

  // -- writes -------------------------------------------------------------------------------------
  /** Write the next version of a prompt (`latest` moves onto it, and the labels given). */
  async create(name: string, prompt: PromptBody, options: CreatePromptOptions = {}): Promise<Prompt> {
    const type = options.type ?? (typeof prompt === "string" ? "text" : "chat");
    const request: Record<string, unknown> = {
      name,
      type,
      labels: [...(options.labels ?? [])],
      tags: [...(options.tags ?? [])],
      commit_message: options.commitMessage ?? "",
      config_json: JSON.stringify(options.config ?? {}),
    };
    if (typeof prompt === "string") request["text"] = prompt;
    else request["messages"] = prompt.map((m) => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, String(v)])));
    const response = await this.registry.createPrompt(request, name);
    this.forget(name);
    return promptOf(response.prompt);
  }

  /** Move these labels onto this version. */
  async setLabels(name: string, version: number, labels: readonly string[]): Promise<Prompt> {
    const response = await this.registry.setLabels(name, version, labels);
    this.forget(name);
    return promptOf(response.prompt);
  }

  /** Point a label at several versions with relative weights ({2: 90, 3: 10}) for an A/B test. */
  async setLabelSplit(name: string, label: string, weights: Readonly<Record<number, number>>): Promise<Record<number, number>> {
    const request = Object.entries(weights).map(([version, weight]) => ({ version: Number(version), weight }));
    const response = await this.registry.setLabelSplit(name, label, request);
    this.forget(name);
    return Object.fromEntries(response.split.map((w) => [w.prompt?.version ?? 0, w.weight]));
  }
}

function emptyVersion(): PromptVersionMsg {
  return {
    name: "",
    version: 0,
    type: "text",
    text: "",
    messages: [],
    config: null,
    labels: [],
    tags: [],
    commit_message: "",
    variables: [],
    config_json: "",
  };
}

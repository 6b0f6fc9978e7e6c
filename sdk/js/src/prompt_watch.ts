/** A WatchPrompts subscription: reconnects with backoff, hands each change to the client, and
 * says when the stream is (re)established so the client can resync what it holds. */
import type * as grpc from "@grpc/grpc-js";

import type { WatchPromptsResponseMsg } from "./registry_client.js";

const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 5_000;
// A stream is live; or the replica may have missed changes: either way, refetch what is cached.
const RESYNC_KINDS = new Set(["watching", "resync"]);

export class PromptWatcher {
  private call: grpc.ClientReadableStream<WatchPromptsResponseMsg> | undefined;
  private stopping = false;
  private backoff = FIRST_BACKOFF_MS;
  private retry: NodeJS.Timeout | undefined;
  private waiters: Array<() => void> = [];
  connected = false;

  constructor(
    private readonly open: () => grpc.ClientReadableStream<WatchPromptsResponseMsg>,
    private readonly onChange: (event: WatchPromptsResponseMsg) => Promise<void>,
    private readonly onResync: () => Promise<void>,
  ) {}

  start(): void {
    this.connect();
  }

  stop(): void {
    this.stopping = true;
    clearTimeout(this.retry);
    this.call?.cancel();
    this.call = undefined;
  }

  /** Resolves true once the stream is open (false after `timeoutMs` without it). */
  whenConnected(timeoutMs: number): Promise<boolean> {
    if (this.connected) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(this.connected), timeoutMs);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  private connect(): void {
    if (this.stopping) return;
    const call = this.open();
    this.call = call;
    // Events are handled one after another, in the order the registry sent them.
    let chain = Promise.resolve();
    call.on("data", (event: WatchPromptsResponseMsg) => {
      chain = chain.then(() => this.handle(event)).catch(() => undefined);
    });
    let ended = false;
    const interrupted = (): void => {
      if (ended) return;
      ended = true;
      this.connected = false;
      if (this.call === call) this.call = undefined;
      this.reconnectLater();
    };
    call.on("error", interrupted);
    call.on("end", interrupted);
  }

  private async handle(event: WatchPromptsResponseMsg): Promise<void> {
    if (RESYNC_KINDS.has(event.kind)) {
      this.connected = true;
      this.backoff = FIRST_BACKOFF_MS;
      for (const wake of this.waiters.splice(0)) wake();
      await this.onResync();
    } else {
      await this.onChange(event);
    }
  }

  private reconnectLater(): void {
    if (this.stopping) return;
    // jitter: many SDKs that lost the same replica do not come back in step
    const delay = this.backoff * (0.5 + Math.random() / 2);
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    this.retry = setTimeout(() => this.connect(), delay);
    this.retry.unref(); // a registry that is down must not keep the app's process alive
  }
}

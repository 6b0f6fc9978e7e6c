/**
 * The SDK's in-process prompt cache: what `getPrompt` serves without I/O.
 *
 * An entry holds a selector's answer (one version, or a split label's weighted versions); it is
 * fresh until its TTL, then served stale while one background refresh per key runs.
 */
import type { Prompt } from "./prompt.js";
import { type Weights, choose } from "./prompt_split.js";

export const PRODUCTION = "production";

/** (prompt name, label, version): a label fetch has version 0; a version fetch has label "". */
export interface KeyParts {
  readonly name: string;
  readonly label: string;
  readonly version: number;
}

export function cacheKey(name: string, label?: string | null, version?: number | null): string {
  return version ? `${name}\u0000\u0000${version}` : `${name}\u0000${label || PRODUCTION}\u00000`;
}

export function keyParts(key: string): KeyParts {
  const [name, label, version] = key.split("\u0000") as [string, string, string];
  return { name, label, version: Number(version) };
}

function samePrompt(a: Prompt | undefined, b: Prompt | undefined): boolean {
  return a !== undefined && b !== undefined && JSON.stringify(a) === JSON.stringify(b);
}

export class Entry {
  freshUntil: number; // performance.now() milliseconds
  readonly label: string;
  readonly weights: Weights;
  readonly byVersion: ReadonlyMap<number, Prompt>;
  readonly single: Prompt | undefined;

  constructor(freshUntil: number, label: string, choices: ReadonlyArray<readonly [Prompt, number]>) {
    this.freshUntil = freshUntil;
    this.label = label;
    if (label) choices = choices.map(([p, w]) => [p.withLabel(label), w] as const);
    this.weights = choices.map(([p, w]) => [p.version, w] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    this.byVersion = new Map(choices.map(([p]) => [p.version, p]));
    this.single = choices.length === 1 ? (choices[0] as readonly [Prompt, number])[0] : undefined;
  }

  sameAnswer(other: Entry): boolean {
    if (this.label !== other.label || JSON.stringify(this.weights) !== JSON.stringify(other.weights)) return false;
    if (this.byVersion.size !== other.byVersion.size) return false;
    for (const [version, prompt] of this.byVersion) {
      if (!samePrompt(prompt, other.byVersion.get(version))) return false;
    }
    return true;
  }

  /** The version this fetch serves; a split label draws exactly as the registry does. */
  pick(stickyKey?: string | null): Prompt {
    if (this.single !== undefined) return this.single;
    const name = (this.byVersion.values().next().value as Prompt).name;
    return this.byVersion.get(choose(this.weights, stickyKey, `${name}\u0000${this.label}`)) as Prompt;
  }
}

export class PromptCache {
  readonly entries = new Map<string, Entry>();
  private readonly refreshing = new Set<string>();

  put(key: string, entry: Entry): void {
    this.entries.set(key, entry);
  }

  evict(key: string): void {
    this.entries.delete(key);
  }

  markStale(key: string): void {
    const entry = this.entries.get(key);
    if (entry !== undefined) entry.freshUntil = 0;
  }

  keysOf(name?: string): string[] {
    return [...this.entries.keys()].filter((k) => name === undefined || keyParts(k).name === name);
  }

  /** True for the one caller that may refresh this key now. */
  beginRefresh(key: string): boolean {
    if (this.refreshing.has(key)) return false;
    this.refreshing.add(key);
    return true;
  }

  endRefresh(key: string): void {
    this.refreshing.delete(key);
  }
}

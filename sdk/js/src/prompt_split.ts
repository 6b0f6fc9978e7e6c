/**
 * Traffic-split labels: which version of a label's allocation serves a fetch.
 *
 * The registry, the Python SDK and this SDK draw with the same function, so that a sticky key
 * (a user or session id) gets the same version whichever of them resolves the label.
 */
import { blake2b } from "./blake2b.js";

export type Weights = ReadonlyArray<readonly [version: number, weight: number]>;

const encoder = new TextEncoder();

/** Pick a version from (version, weight) pairs: by weight at random, or, with a sticky key,
 * the same version for that key every time the allocation is unchanged. */
export function choose(weights: Weights, stickyKey?: string | null, salt = ""): number {
  if (weights.length === 1) return (weights[0] as readonly [number, number])[0];
  const ordered = [...weights].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const total = ordered.reduce((sum, [, w]) => sum + w, 0);
  if (total <= 0) throw new RangeError("a split needs a positive total weight");
  let point: number;
  if (stickyKey) {
    const digest = blake2b(encoder.encode(`${salt}\u0000${stickyKey}`), 8);
    const big = new DataView(digest.buffer, digest.byteOffset, 8).getBigUint64(0, false);
    point = Number(big % BigInt(total));
  } else {
    point = Math.floor(Math.random() * total);
  }
  for (const [version, weight] of ordered) {
    if (point < weight) return version;
    point -= weight;
  }
  return (ordered[ordered.length - 1] as readonly [number, number])[0];
}

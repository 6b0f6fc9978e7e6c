/** Scores: one POST to ingest's /api/v1/scores (a retry with the same id is stored once). */
import { randomUUID } from "node:crypto";

import type { ClientConfig } from "./config.js";

export interface ScoreOptions {
  traceId: string | bigint;
  name: string;
  value: number | boolean | string;
  spanId?: string | bigint;
  dataType?: "numeric" | "boolean" | "categorical";
  source?: "api" | "annotation" | "eval"; // default "api"
  comment?: string;
  scoreId?: string;
  timeoutMs?: number; // default 10 s
}

/** Vane refused a score, or could not be reached; the message says which. */
export class ScoreError extends Error {
  override name = "ScoreError";
}

function hexId(id: string | bigint, digits: number): string {
  return typeof id === "bigint" ? id.toString(16).padStart(digits, "0") : id;
}

/** Send one score to Vane; resolves to its id. */
export async function sendScore(config: ClientConfig, options: ScoreOptions): Promise<string> {
  const body: Record<string, unknown> = {
    id: options.scoreId || randomUUID(),
    trace_id: hexId(options.traceId, 32),
    name: options.name,
    value: options.value,
    source: options.source ?? "api",
  };
  if (options.spanId !== undefined) body["span_id"] = hexId(options.spanId, 16);
  if (options.dataType) body["data_type"] = options.dataType;
  if (options.comment) body["comment"] = options.comment;
  let response: Response;
  try {
    response = await fetch(`${config.apiUrl}/api/v1/scores`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${config.secretKey}` },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
    });
  } catch (error) {
    const cause = (error as { cause?: { message?: string } }).cause?.message ?? (error as Error).message;
    throw new ScoreError(`cannot reach Vane at ${config.apiUrl}: ${cause}`);
  }
  const text = await response.text();
  if (!response.ok) throw new ScoreError(`Vane refused the score (${response.status}): ${text}`);
  return String(body["id"]);
}

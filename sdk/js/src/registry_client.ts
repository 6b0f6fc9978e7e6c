/** The registry's gRPC API as typed calls: the schema from proto/vane/v1, messages as plain objects,
 * and gRPC failures turned into the SDK's errors. */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

import { PROMPTS_PROTO } from "./generated/prompts_proto.js";
import { Prompt, type PromptConfig, type PromptType } from "./prompt.js";
import type { Message, PromptBody } from "./prompt_template.js";

const CALL_TIMEOUT_MS = 3_000;
const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.initial_reconnect_backoff_ms": 200,
  "grpc.max_reconnect_backoff_ms": 5_000,
};

export class PromptError extends Error {
  override name = "PromptError";
}
export class PromptNotFound extends PromptError {
  override name = "PromptNotFound";
}
/** The registry refused a write (a broken rule) or the key. */
export class PromptRejected extends PromptError {
  override name = "PromptRejected";
}
/** The registry did not answer, and nothing cached or given as fallback could stand in. */
export class RegistryUnavailable extends PromptError {
  override name = "RegistryUnavailable";
}

// -- the wire messages (keepCase: field names as in the .proto) ---------------------------------
export interface ChatMessageMsg {
  role: string;
  content: string;
  type: string;
  name: string;
}
export interface PromptVersionMsg {
  name: string;
  version: number;
  type: string;
  text: string;
  messages: ChatMessageMsg[];
  config: { fields?: Record<string, unknown> } | null;
  labels: string[];
  tags: string[];
  commit_message: string;
  variables: string[];
  config_json: string;
}
export interface WeightedVersionMsg {
  prompt: PromptVersionMsg | null;
  weight: number;
}
export interface GetPromptResponseMsg {
  prompt: PromptVersionMsg | null;
  resolved_label: string;
  split: WeightedVersionMsg[];
}
export interface WatchPromptsResponseMsg {
  name: string;
  version: number;
  labels: string[];
  kind: string; // watching, resync, version_created, labels_moved, version_removed
}

type Callback<T> = (error: grpc.ServiceError | null, response?: T) => void;
interface PromptServiceStub extends grpc.Client {
  GetPrompt(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<GetPromptResponseMsg>): void;
  CreatePrompt(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<{ prompt: PromptVersionMsg }>): void;
  SetLabels(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<{ prompt: PromptVersionMsg }>): void;
  SetLabelSplit(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<{ split: WeightedVersionMsg[] }>): void;
  WatchPrompts(req: object, md: grpc.Metadata): grpc.ClientReadableStream<WatchPromptsResponseMsg>;
}
type StubConstructor = new (address: string, credentials: grpc.ChannelCredentials, options: grpc.ChannelOptions) => PromptServiceStub;

let stubConstructor: StubConstructor | undefined;

function promptService(): StubConstructor {
  if (stubConstructor === undefined) {
    const json = PROMPTS_PROTO as Parameters<typeof protoLoader.fromJSON>[0];
    const definition = protoLoader.fromJSON(json, { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      vane: { v1: { PromptService: StubConstructor } };
    };
    stubConstructor = loaded.vane.v1.PromptService;
  }
  return stubConstructor;
}

// -- messages → Prompt -----------------------------------------------------------------------------
/** A google.protobuf.Struct as proto-loader gives it, back to plain JSON. */
function structValue(value: unknown): unknown {
  const v = (value ?? {}) as Record<string, unknown>;
  switch (v["kind"]) {
    case "nullValue":
      return null;
    case "numberValue":
      return v["numberValue"];
    case "stringValue":
      return v["stringValue"];
    case "boolValue":
      return v["boolValue"];
    case "structValue":
      return structObject(v["structValue"]);
    case "listValue":
      return (((v["listValue"] as { values?: unknown[] } | null)?.values) ?? []).map(structValue);
    default:
      return v["structValue"] ? structObject(v["structValue"]) : null;
  }
}

function structObject(struct: unknown): PromptConfig {
  const fields = ((struct as { fields?: Record<string, unknown> } | null)?.fields) ?? {};
  return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, structValue(v)]));
}

export function promptOf(message: PromptVersionMsg): Prompt {
  const body: PromptBody =
    message.type === "text"
      ? message.text
      : message.messages.map(
          (m): Message => (m.type === "placeholder" ? { type: "placeholder", name: m.name } : { role: m.role, content: m.content }),
        );
  const config = message.config_json ? (JSON.parse(message.config_json) as PromptConfig) : structObject(message.config);
  return new Prompt({
    name: message.name,
    version: message.version,
    type: message.type as PromptType,
    prompt: body,
    config,
    labels: message.labels,
    tags: message.tags,
    variables: message.variables,
    commitMessage: message.commit_message,
  });
}

function errorMessage(error: grpc.ServiceError): string {
  const details = error.details || "";
  try {
    const parsed = JSON.parse(details) as { error?: { message?: unknown } };
    if (parsed.error?.message !== undefined) return String(parsed.error.message);
  } catch {
    // not JSON: the details are the message
  }
  return details;
}

// -- the client ------------------------------------------------------------------------------------
export class RegistryClient {
  readonly address: string;
  private readonly stub: PromptServiceStub;
  private readonly secretKey: string;

  constructor(address: string, secretKey: string) {
    this.address = address;
    this.secretKey = secretKey;
    const Service = promptService();
    this.stub = new Service(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  }

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${this.secretKey}`);
    return md;
  }

  private unary<T>(method: "GetPrompt" | "CreatePrompt" | "SetLabels" | "SetLabelSplit", request: object, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const options: grpc.CallOptions = { deadline: Date.now() + CALL_TIMEOUT_MS };
      const done: Callback<T> = (error, response) => {
        if (error) reject(this.errorOf(error, what));
        else resolve(response as T);
      };
      (this.stub[method] as (r: object, m: grpc.Metadata, o: grpc.CallOptions, cb: Callback<T>) => void).call(
        this.stub,
        request,
        this.metadata(),
        options,
        done,
      );
    });
  }

  getPrompt(name: string, label: string, version: number): Promise<GetPromptResponseMsg> {
    const what = `prompt '${name}' (${version ? `version ${version}` : label})`;
    return this.unary<GetPromptResponseMsg>("GetPrompt", { name, label, version }, what);
  }

  createPrompt(request: object, name: string): Promise<{ prompt: PromptVersionMsg }> {
    return this.unary("CreatePrompt", request, `prompt '${name}'`);
  }

  setLabels(name: string, version: number, labels: readonly string[]): Promise<{ prompt: PromptVersionMsg }> {
    return this.unary("SetLabels", { name, version, labels }, `prompt '${name}' version ${version}`);
  }

  setLabelSplit(name: string, label: string, weights: ReadonlyArray<{ version: number; weight: number }>): Promise<{ split: WeightedVersionMsg[] }> {
    return this.unary("SetLabelSplit", { name, label, weights }, `label '${label}' of prompt '${name}'`);
  }

  watchPrompts(): grpc.ClientReadableStream<WatchPromptsResponseMsg> {
    return this.stub.WatchPrompts({}, this.metadata());
  }

  errorOf(error: grpc.ServiceError, what: string): PromptError {
    const message = errorMessage(error);
    const code = error.code;
    if (code === grpc.status.NOT_FOUND) {
      return new PromptNotFound(`${what} not found in the registry at ${this.address}: ${message}`);
    }
    if (code === grpc.status.UNAUTHENTICATED || code === grpc.status.INVALID_ARGUMENT || code === grpc.status.FAILED_PRECONDITION) {
      return new PromptRejected(`the registry at ${this.address} refused ${what}: ${message}`);
    }
    const codeName = grpc.status[code] ?? String(code);
    return new RegistryUnavailable(`the prompt registry at ${this.address} is unreachable (${codeName}): ${message}`);
  }

  close(): void {
    this.stub.close();
  }
}

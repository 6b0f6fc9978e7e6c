/** Where the SDK finds Vane and its key: options first, then the environment (as the Python SDK). */

export interface VaneOptions {
  secretKey?: string;
  publicKey?: string;
  registry?: string; // host:port of the registry's gRPC API
  otlpEndpoint?: string; // base URL of ingest's OTLP/HTTP receiver
  apiUrl?: string; // base URL of the HTTP APIs that take writes (ingest: scores)
  watch?: boolean; // follow label moves over WatchPrompts (default true)
}

export interface ClientConfig {
  readonly secretKey: string;
  readonly publicKey: string;
  readonly registry: string;
  readonly otlpEndpoint: string;
  readonly apiUrl: string;
}

function env(name: string): string | undefined {
  const value = process.env[name];
  return value ? value : undefined;
}

function withoutTrailingSlash(url: string): string {
  return url.replace(/\/+$/, "");
}

export function resolveConfig(options: VaneOptions = {}): ClientConfig {
  return Object.freeze({
    secretKey: options.secretKey || env("VANE_SECRET_KEY") || "",
    publicKey: options.publicKey || env("VANE_PUBLIC_KEY") || "",
    registry: options.registry || env("VANE_REGISTRY") || "127.0.0.1:50051",
    otlpEndpoint: withoutTrailingSlash(options.otlpEndpoint || env("VANE_OTLP_ENDPOINT") || "http://127.0.0.1:4318"),
    apiUrl: withoutTrailingSlash(options.apiUrl || env("VANE_API_URL") || "http://127.0.0.1:4318"),
  });
}

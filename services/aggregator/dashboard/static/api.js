// The public APIs, with the user's key in the Authorization header (never in a URL).
const KEY = "vane.secret_key";

export function savedKey() {
  return sessionStorage.getItem(KEY);
}

export function saveKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

export class Unauthorised extends Error {}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** GET or send JSON; answers the parsed body, or throws ApiError (Unauthorised on 401). */
export async function api(path, { method = "GET", body, key = savedKey() } = {}) {
  const headers = { Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (response.status === 401) throw new Unauthorised(errorMessage(parsed, "the key was refused"));
  if (!response.ok) throw new ApiError(response.status, errorMessage(parsed, `${response.status} ${response.statusText}`));
  return parsed;
}

function errorMessage(body, fallback) {
  const error = body && body.error;
  if (typeof error === "string") return error;
  if (error && error.message) return error.message;
  if (body && body.detail) return body.detail;
  return fallback;
}

/** A query string from the set values of an object. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

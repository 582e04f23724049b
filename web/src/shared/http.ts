// Calls to the Fleety API from the browser: JSON in, JSON out, and every error the server
// answers as `{"error": "..."}` turned into an `ApiError` that keeps the status and, for a 429,
// when to try again.

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    /** Seconds to wait, from `Retry-After` (429 and some 503s). */
    readonly retryAfter?: number,
  ) {
    super(message);
  }

  /** No answer at all: the network is down or the server unreachable. */
  get offline(): boolean {
    return this.status === 0;
  }
}

export interface Call {
  method?: string;
  /** Sent as `Authorization: Bearer ...`. */
  token?: string;
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Send and accept this server's cookies (a member's session); off for everything else. */
  cookie?: boolean;
}

/** Sends the request; the answer if it is a 2xx, else an `ApiError`. */
export async function send(url: string, call: Call = {}): Promise<Response> {
  const headers: Record<string, string> = { ...call.headers };
  if (call.token) headers.Authorization = `Bearer ${call.token}`;
  if (call.body !== undefined) headers["Content-Type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(url, {
      method: call.method ?? (call.body === undefined ? "GET" : "POST"),
      headers,
      body: call.body === undefined ? undefined : JSON.stringify(call.body),
      signal: call.signal,
      credentials: call.cookie ? "same-origin" : "omit",
    });
  } catch (e) {
    if ((e as Error).name === "AbortError") throw e;
    throw new ApiError("network unreachable", 0);
  }
  if (response.ok) return response;
  let message = response.statusText || `HTTP ${response.status}`;
  try {
    const body = await response.json();
    if (typeof body?.error === "string") message = body.error;
  } catch {
    // Not JSON: keep the status text.
  }
  const retry = Number(response.headers.get("Retry-After"));
  throw new ApiError(message, response.status, Number.isFinite(retry) && retry > 0 ? retry : undefined);
}

export async function json<T>(url: string, call: Call = {}): Promise<T> {
  return (await send(url, call)).json() as Promise<T>;
}

/** A random id for an `Idempotency-Key`: the same one on every retry of one message. */
export function randomKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// A visitor's journey through the API with a client generated from its OpenAPI document:
// `openapi-typescript` made ../src/shared/api-types.ts from the served `/v1/openapi.json`, and
// `openapi-fetch` types every call below by it (paths, parameters, bodies, answers, errors).
// scripts/clients.sh type-checks this file (tsc, strict), bundles it and runs it with node:
//
//   node journey.mjs http://127.0.0.1:PORT
//
// It exits non-zero, saying which step failed, when the server answers anything unexpected.

import createClient from "openapi-fetch";

import type { components, paths } from "../src/shared/api-types";

// Node's own globals, without its type package: the journey needs nothing else of Node.
declare const process: { argv: string[]; exitCode?: number };

type Schemas = components["schemas"];
/** What one JSON `data:` event of `/v1/chat` carries. The document says so in the event's
 * `contentSchema`, which openapi-typescript does not read: hence this copy. */
type PromptFrame = { content: string } | Schemas["Error"];

const PROJECT = "demo";

function check(condition: boolean, what: string): asserts condition {
  if (!condition) throw new Error(`failed: ${what}`);
}

/** The data of a successful answer, or the step's failure with the server's own error. */
function ok<T>(step: string, answer: { data?: T; error?: unknown; response: Response }, status: number): T {
  const { data, error, response } = answer;
  if (response.status !== status || data === undefined) {
    throw new Error(`${step}: ${response.status} ${JSON.stringify(error ?? data)} (expected ${status})`);
  }
  return data;
}

/** Reads a `text/event-stream` body: the `data:` field of every event, in order. */
async function* events(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (value) buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (data) yield data;
    }
    if (done) return;
  }
}

async function journey(baseUrl: string) {
  const api = createClient<paths>({ baseUrl });

  // A visitor's session.
  const session = ok(
    "init-session",
    await api.POST("/v1/init-session", { body: { project_id: PROJECT } }),
    200,
  );
  check(session.project_id === PROJECT && session.token.length > 0, "the session is for the project");
  console.log(`session for ${session.project_id}, until ${session.expires_at}`);

  // The visitor's session token as the bearer: the ticket remembers the session, and the chat
  // needs it. The other ticket endpoints take no credentials from a visitor.
  const visitor = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${session.token}` } });
  const project = { projectId: PROJECT };

  const ticket = ok(
    "create ticket",
    await visitor.POST("/v1/tickets/{projectId}", {
      params: { path: project },
      body: { title: "The export button does nothing", description: "From the generated TypeScript client." },
    }),
    201,
  );
  check(ticket.status === "open" && ticket.messages.length === 0, "a new ticket is open and empty");
  console.log(`ticket ${ticket.slug}`);
  const path = { projectId: PROJECT, slug: ticket.slug };

  const posted = ok(
    "post message",
    await api.POST("/v1/tickets/{projectId}/{slug}/messages", {
      params: { path, header: { "Idempotency-Key": `ts-journey-${ticket.id}` } },
      body: { author: "user", content: "Clicking Export shows nothing at all." },
    }),
    201,
  );
  const message = posted.data;
  check(message.author === "user" && message.content === "Clicking Export shows nothing at all.", "the message as stored");

  const read = ok(
    "mark read",
    await api.PATCH("/v1/tickets/{projectId}/{slug}/messages/read", {
      params: { path },
      body: { reader: "user" },
    }),
    200,
  );
  check(read.last_read_message_id === message.id, "read up to the message");

  const got = ok("get ticket", await api.GET("/v1/tickets/{projectId}/{slug}", { params: { path } }), 200);
  const stored = got.messages.find((m) => m.id === message.id);
  check(stored !== undefined, "the ticket has the message");
  check(stored.read_by.includes("user"), "read_by includes user");
  console.log(`message ${stored.id} read by ${stored.read_by.join(", ")}`);

  // A refusal comes back typed as the document's `Error`.
  const missing = await api.GET("/v1/tickets/{projectId}/{slug}", {
    params: { path: { projectId: PROJECT, slug: "nosuch-ticket-000" } },
  });
  check(missing.response.status === 404 && typeof missing.error?.error === "string", "an unknown ticket is a 404 with an error");

  // The assistant's answer, streamed as server-sent events.
  const chat = await visitor.POST("/v1/chat", {
    body: { prompt: "How do I reset my password?" },
    parseAs: "stream",
  });
  check(chat.response.status === 200 && chat.data != null, `chat answers 200 (got ${chat.response.status})`);
  check((chat.response.headers.get("Content-Type") ?? "").startsWith("text/event-stream"), "chat streams events");
  let answer = "";
  let pieces = 0;
  let finished = false;
  for await (const data of events(chat.data)) {
    check(!finished, "nothing follows [DONE]");
    if (data === "[DONE]") {
      finished = true;
      continue;
    }
    const frame = JSON.parse(data) as PromptFrame;
    if ("error" in frame) throw new Error(`chat: the stream failed: ${frame.error}`);
    answer += frame.content;
    pieces += 1;
  }
  check(finished, "the stream ends with [DONE]");
  check(pieces > 0 && answer.trim().length > 0, "the assistant said something");
  console.log(`chat: ${pieces} events, ${answer.length} characters`);
}

const url = process.argv[2];
if (!url) {
  console.error("usage: node journey.mjs BASE_URL");
  process.exitCode = 2;
} else {
  journey(url).then(
    () => console.log("typescript journey: passed"),
    (e: unknown) => {
      console.error(`typescript journey: ${e instanceof Error ? e.message : String(e)}`);
      process.exitCode = 1;
    },
  );
}

// An agent registers a webhook from the inbox's settings, sees its secret once, watches a
// signed delivery land in the log, and replays it. The receiver checks every signature.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";

import { browser, createProject, shot, startServer } from "./harness.mjs";

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

let server, project, receiver, chromium, agent;
const received = [];

/** A receiver on port 0 that records each request and answers 200. */
function startReceiver() {
  return new Promise((done) => {
    const http = createServer((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        received.push({ headers: req.headers, body });
        res.writeHead(200).end();
      });
    });
    http.listen(0, "127.0.0.1", () => {
      const url = `http://127.0.0.1:${http.address().port}/hooks`;
      done({ url, close: () => new Promise((r) => http.close(r)) });
    });
  });
}

/** The Standard Webhooks signature, computed here independently of the server. */
function expectedSignature(secret, { headers, body }) {
  const key = Buffer.from(secret.slice("whsec_".length), "base64");
  const signed = `${headers["webhook-id"]}.${headers["webhook-timestamp"]}.${body}`;
  return `v1,${createHmac("sha256", key).update(signed).digest("base64")}`;
}

async function waitFor(what, check) {
  for (let i = 0; i < 200; i++) {
    const found = check();
    if (found) return found;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`gave up waiting for ${what}`);
}

before(async () => {
  receiver = await startReceiver();
  // The receiver is on 127.0.0.1, which only an operator's say-so lets a webhook call.
  server = await startServer({ env: { FLEETY_WEBHOOK_ALLOW_PRIVATE: "true" } });
  project = await createProject(server.base, ["http://127.0.0.1:9"], "Hooks");
  chromium = await browser();
  const context = await chromium.newContext({ viewport: { width: 1280, height: 800 }, bypassCSP: true });
  agent = await context.newPage();
  agent.on("pageerror", (e) => console.error("agent page error:", e.message));
  await agent.goto(`${server.base}/inbox`);
  await agent.getByLabel("Project id").fill(project.id);
  await agent.getByLabel("Admin key").fill(project.key);
  await agent.getByLabel("Your name").fill("Sam");
  await agent.getByRole("button", { name: "Sign in" }).click();
  await agent.getByRole("status").filter({ hasText: "Live" }).waitFor();
});

after(async () => {
  await chromium?.close();
  await server?.stop();
  await receiver?.close();
});

let secret;

test("an agent registers a webhook and is shown its secret once", async () => {
  await agent.getByRole("button", { name: "Settings" }).click();
  await agent.getByLabel("Endpoint URL").fill(receiver.url);
  await agent.getByRole("checkbox", { name: "ticket.assigned" }).uncheck();
  await agent.getByRole("button", { name: "Add endpoint" }).click();
  const shown = agent.getByRole("status").filter({ hasText: "Signing secret" });
  secret = (await shown.locator("code").textContent()).trim();
  assert.match(secret, /^whsec_[A-Za-z0-9+/]+=*$/);
  const row = agent.locator(".hooks li", { hasText: receiver.url });
  await row.waitFor();
  assert.match(await row.locator(".sub").textContent(), /ticket\.created, ticket\.status_changed, message\.created, ticket\.rated$/);
  // Listed again after a reload, without the secret.
  await agent.reload();
  await agent.getByRole("button", { name: "Settings" }).click();
  await agent.locator(".hooks li", { hasText: receiver.url }).waitFor();
  assert.equal(await agent.getByText(secret).count(), 0);
});

test("a new ticket is delivered, signed, and shows in the endpoint's log", async () => {
  const r = await fetch(`${server.base}/v1/tickets/${project.id}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ title: "Webhook me", description: "From the browser test" }),
  });
  assert.equal(r.status, 201);
  const ticket = await r.json();
  const first = await waitFor("the delivery", () => received[0]);
  assert.equal(first.headers["webhook-signature"], expectedSignature(secret, first));
  assert.equal(first.headers["content-type"], "application/json");
  const payload = JSON.parse(first.body);
  assert.equal(payload.type, "ticket.created");
  assert.equal(payload.data.slug, ticket.data?.slug ?? ticket.slug);

  await agent.getByRole("button", { name: "Deliveries" }).click();
  const delivered = agent.locator("tr.delivery.succeeded", { hasText: "ticket.created" });
  for (let i = 0; i < 40 && (await delivered.count()) === 0; i++) {
    await agent.getByRole("button", { name: "Refresh" }).click();
    await agent.waitForTimeout(100);
  }
  await delivered.waitFor();
  assert.match(await delivered.textContent(), /200/);
  await shot(agent, "inbox-webhooks");
  await agent.addScriptTag({ content: AXE });
  const violations = await agent.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return r.violations.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => v.id);
  });
  assert.deepEqual(violations, []);
});

test("a replay sends the same delivery again, with the same id", async () => {
  await agent.getByRole("button", { name: /^Replay ticket\.created/ }).click();
  const again = await waitFor("the replay", () => received[1]);
  assert.equal(again.headers["webhook-id"], received[0].headers["webhook-id"]);
  assert.equal(again.body, received[0].body);
  assert.equal(again.headers["webhook-signature"], expectedSignature(secret, again));
});

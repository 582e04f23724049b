// The inbox's Audit page: an owner and an agent answer tickets and change the knowledge base;
// the owner opens the Audit page and sees each action with who did it, what changed and from
// where, newest first; filters by member, by action and by date; and pages back with "Older".
// An agent has no Audit page, and the API refuses them the trail.

import assert from "node:assert/strict";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";

import { addMember, axe, browser, createProject, PASSWORD, shot, signIn, startServer } from "./harness.mjs";

const DOCS = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "docs", "images");

let server, project, chromium, owner;
const ids = {};

/** A bearer session of `email`, for acting through the API as that member. */
async function session(email) {
  const r = await fetch(`${server.base}/v1/projects/${project.id}/sign-in`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email, password: PASSWORD }),
  });
  assert.equal(r.status, 200);
  return (await r.json()).token;
}

async function act(token, method, path, body) {
  const r = await fetch(`${server.base}${path}`, {
    method,
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  assert.ok(r.ok, `${method} ${path}: ${r.status} ${text}`);
  return JSON.parse(text);
}

async function openTicket(title) {
  const r = await fetch(`${server.base}/v1/tickets/${project.id}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ title, description: "From the help widget" }),
  });
  assert.equal(r.status, 201);
  return (await r.json()).slug;
}

/** The Audit table's rows as text, top to bottom. */
async function rows(page) {
  return page.locator("table.audit-log tbody tr").allTextContents();
}

before(async () => {
  server = await startServer();
  project = await createProject(server.base, ["http://127.0.0.1:9"], "Acme");
  ids.olga = await addMember(server.base, project.id, { email: "olga@example.com", name: "Olga Petrova", role: "owner" });
  ids.eli = await addMember(server.base, project.id, { email: "eli@example.com", name: "Eli Novak" });
  const olga = await session("olga@example.com");
  const eli = await session("eli@example.com");
  const p = project.id;

  const refund = await openTicket("Refund for order #1042");
  const parcel = await openTicket("Parcel shows delivered but never arrived");
  const login = await openTicket("Cannot sign in after password change");
  // Yesterday's triage, enough of it for a second page.
  for (let i = 0; i < 50; i++) {
    await act(eli, "PATCH", `/v1/tickets/${p}/${login}`, { tags: i % 2 ? ["account"] : ["account", "urgent"] });
  }
  // This morning's work on the tickets, by both.
  await act(olga, "PATCH", `/v1/tickets/${p}/${refund}`, { assignee_id: ids.eli });
  await act(eli, "POST", `/v1/tickets/${p}/${refund}/messages`, { author: "admin", content: "Your refund is on its way." });
  await act(eli, "PATCH", `/v1/tickets/${p}/${refund}`, { status: "resolved", tags: ["billing", "refund"] });
  await act(eli, "POST", `/v1/projects/${p}/tickets/${parcel}/notes`, { author: "Eli Novak", content: "Courier claims it was left at the door." });
  await act(olga, "PATCH", `/v1/tickets/${p}/${parcel}`, { status: "pending", assignee_id: ids.olga });
  await act(olga, "PATCH", `/v1/tickets/${p}/${login}`, { tags: ["account"] });
  const article = await act(olga, "POST", `/v1/projects/${p}/kb/articles`, {
    title: "Lost parcels",
    body: "If a parcel shows as delivered but never arrived, tell us within 14 days.",
  });
  await act(olga, "PATCH", `/v1/projects/${p}/kb/articles/${article.id}`, { title: "Lost or stolen parcels" });
  await act(olga, "PATCH", `/v1/projects/${p}`, { name: "Acme Store" });

  chromium = await browser();
  const context = await chromium.newContext({ viewport: { width: 1280, height: 860 } });
  owner = await context.newPage();
  owner.on("pageerror", (e) => console.error("owner page error:", e.message));
  await signIn(owner, server.base, project.id, "olga@example.com");
});

after(async () => {
  await chromium?.close();
  await server?.stop();
});

test("the owner sees every action on the Audit page, newest first, with who, what and where", async () => {
  await owner.getByRole("button", { name: "Audit" }).click();
  await owner.getByRole("heading", { name: "Audit trail" }).waitFor();
  const table = owner.getByRole("table", { name: "Audit records, newest first" });
  await table.waitFor();
  const shown = await rows(owner);
  assert.equal(shown.length, 50, "a page of 50");
  // The newest: Olga's sign-in to this inbox, then her renaming the project.
  assert.match(shown[0], /Olga Petrova.*member\.signed_in/);
  const headers = await table.locator("thead th").allTextContents();
  assert.deepEqual(headers, ["Time", "Member", "Action", "What changed", "IP"]);
  assert.match(shown[1], /Olga Petrova.*project\.changed.*name: Acme → Acme Store.*127\.0\.0\.1/);
  const text = shown.join("\n");
  assert.match(text, /Olga Petrova.*ticket\.assigned.*Refund for order #1042.*assignee: nobody → Eli Novak/);
  assert.match(text, /Eli Novak.*ticket\.replied.*Refund for order #1042.*message: /);
  assert.match(text, /Eli Novak.*ticket\.status_changed.*status: open → resolved/);
  assert.match(text, /Eli Novak.*ticket\.note_added.*Parcel shows delivered/);
  assert.match(text, /Olga Petrova.*article\.changed.*Lost or stolen parcels.*title: Lost parcels → Lost or stolen parcels/);
  // The trail is no copy of the conversation.
  assert.ok(!text.includes("Your refund is on its way") && !text.includes("left at the door"));
  assert.deepEqual(await axe(owner), []);
});

test("older records come a page at a time, by keyboard too", async () => {
  const older = owner.getByRole("button", { name: "Older" });
  await older.focus();
  await owner.keyboard.press("Enter");
  await owner.waitForFunction(() => document.querySelectorAll("table.audit-log tbody tr").length > 50);
  const text = (await rows(owner)).slice(50).join("\n");
  assert.match(text, /Eli Novak.*ticket\.tags_changed.*Cannot sign in after password change.*tags: account, urgent → account/);
  // The oldest: the project's first article, made with the admin key, and its members, added
  // by the operator.
  assert.match(text, /Admin key.*article\.created.*Refunds.*title: Refunds/);
  assert.match(text, /Operator.*member\.added.*Eli Novak/);
  assert.equal(await owner.getByRole("button", { name: "Older" }).count(), 0, "no page after the last");
});

test("the owner filters by member, by action and by date", async () => {
  await owner.getByLabel("Member", { exact: true }).selectOption({ label: "Olga Petrova" });
  await owner.waitForFunction(() => [...document.querySelectorAll("table.audit-log tbody tr")].every((r) => r.textContent.includes("Olga Petrova")));
  assert.ok((await rows(owner)).length >= 8);

  await owner.getByLabel("Action", { exact: true }).selectOption({ label: "Ticket status changed" });
  await owner.waitForFunction(() => document.querySelectorAll("table.audit-log tbody tr").length === 1);
  assert.match((await rows(owner))[0], /Olga Petrova.*ticket\.status_changed.*Parcel shows delivered.*status: open → pending/);

  await owner.getByLabel("Member", { exact: true }).selectOption({ label: "Anyone" });
  await owner.waitForFunction(() => document.querySelectorAll("table.audit-log tbody tr").length === 2);
  const statuses = await rows(owner);
  assert.match(statuses[0], /Olga Petrova.*pending/);
  assert.match(statuses[1], /Eli Novak.*resolved/);

  // Since tomorrow: nothing yet.
  const tomorrow = new Date(Date.now() + 86_400_000);
  const day = `${tomorrow.getFullYear()}-${String(tomorrow.getMonth() + 1).padStart(2, "0")}-${String(tomorrow.getDate()).padStart(2, "0")}`;
  await owner.getByLabel("Since", { exact: true }).fill(day);
  await owner.getByText("Nothing recorded that matches.").waitFor();
  assert.deepEqual(await axe(owner), []);
});

test("a screenshot of the Audit page for the docs", async () => {
  await owner.reload();
  await owner.getByRole("button", { name: "Audit" }).click();
  await owner.getByRole("table", { name: "Audit records, newest first" }).waitFor();
  const path = await shot(owner, "audit-page");
  mkdirSync(DOCS, { recursive: true });
  copyFileSync(path, join(DOCS, "audit.png"));
});

test("an agent has no Audit page, and the API refuses them the trail", async () => {
  const context = await chromium.newContext({ viewport: { width: 1280, height: 800 } });
  const agent = await context.newPage();
  await signIn(agent, server.base, project.id, "eli@example.com");
  const views = await agent.getByRole("navigation", { name: "Views" }).getByRole("button").allTextContents();
  assert.ok(!views.includes("Audit"), views.join(", "));
  const status = await agent.evaluate(async (id) => (await fetch(`/v1/projects/${id}/audit`)).status, project.id);
  assert.equal(status, 403);
  await context.close();
});

// Known visitors (issue 28): the customer's page identifies its signed-in user with a user hash
// (computed here as the customer's backend would, with Node's crypto), the visitor asks for a
// person, and a second browser (another device) identified as the same user after the widget
// loaded finds that conversation and opens it. The inbox shows the contact beside the thread.
// A reset (sign-out) leaves the list behind. Screenshots go to target/e2e/.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, test } from "node:test";

import { browser, createProject, shot, startHostPage, startServer } from "./harness.mjs";

let server, project, host, chromium, secret;

async function admin(method, path, body) {
  const r = await fetch(`${server.base}${path}`, {
    method,
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${project.key}` },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

/** What the customer's backend puts in its page for a signed-in user. */
function identity(userId) {
  const user_hash = createHmac("sha256", secret).update(userId).digest("hex");
  return { user_id: userId, user_hash, name: "Ada Lovelace", email: "ada@example.com", attributes: { plan: "pro" } };
}

before(async () => {
  server = await startServer({ env: { FLEETY_PUBLIC_RATE_LIMIT: "100" } });
  host = await startHostPage(server.base);
  project = await createProject(server.base, [host.origin], "Identity");
  host.project = project.id;
  secret = (await admin("POST", `/v1/projects/${project.id}/identity-secrets`)).secret;
  chromium = await browser();
});

after(async () => {
  await chromium?.close();
  await host?.close();
  await server?.stop();
});

async function page(t, who, options = {}) {
  const context = await chromium.newContext({ viewport: { width: 1100, height: 760 }, ...options });
  t.after(() => context.close());
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`${who} page error:`, e.message));
  return page;
}

async function openWidget(visitor) {
  await visitor.goto(host.origin);
  const widget = visitor.locator("fleety-widget");
  await widget.locator(".launcher").click();
  await widget.locator("textarea").waitFor();
  return widget;
}

test("an identified visitor finds their conversation on another device, and the inbox shows who they are", async (t) => {
  // The first device: the page identifies its user before the widget has loaded.
  const first = await page(t, "first device");
  await first.addInitScript((id) => {
    window.Fleety = [["identify", id]];
  }, identity("u-100"));
  let widget = await openWidget(first);
  await widget.getByRole("button", { name: "Talk to a person" }).click();
  const notice = widget.locator(".notice").filter({ hasText: "is open" }).last();
  await notice.waitFor();
  const slug = /Ticket (\S+) is open/.exec(await notice.textContent())[1];
  await shot(first, "identity-first-device");

  // The ticket is the contact's.
  const ticket = await admin("GET", `/v1/tickets/${project.id}/${slug}`);
  assert.equal(ticket.contact?.external_id, "u-100");
  assert.equal(ticket.contact?.verified, true);

  // The second device: anonymous at first, identified once the widget is up.
  const second = await page(t, "second device");
  widget = await openWidget(second);
  assert.equal(await widget.locator(".known").count(), 0, "an anonymous visitor has no list");
  await second.evaluate((id) => window.Fleety.push(["identify", id]), identity("u-100"));
  const known = widget.locator("nav.known");
  await known.getByRole("button").first().waitFor();
  assert.equal(await known.getByRole("button").count(), 1);
  await shot(second, "identity-second-device-list");
  await known.getByRole("button").first().click();
  await widget.locator(".notice").filter({ hasText: slug }).waitFor();
  await widget.locator(".message.user").first().waitFor();
  await shot(second, "identity-second-device-opened");

  // A forged identity is not believed: the visitor stays anonymous and sees nothing of u-100's.
  const forger = await page(t, "forger");
  widget = await openWidget(forger);
  await forger.evaluate(() => window.Fleety.push(["identify", { user_id: "u-100", user_hash: "0".repeat(64) }]));
  await widget.locator(".message.assistant").first().waitFor();
  const tickets = await forger.evaluate(async ([base, id]) => {
    const stored = JSON.parse(localStorage.getItem(`fleety:v1:${id}`) ?? "{}");
    if (!stored.token) return null;
    const r = await fetch(`${base}/v1/session/tickets`, { headers: { Authorization: `Bearer ${stored.token}` } });
    return (await r.json()).tickets;
  }, [server.base, project.id]);
  assert.ok(tickets === null || tickets.length === 0, "a forged identity sees no tickets");
  assert.equal(await widget.locator(".known").count(), 0);

  // Signing out: the list goes with the identity.
  await second.evaluate(() => window.Fleety.push(["reset"]));
  await known.waitFor({ state: "detached" });

  // The inbox: the contact card beside the thread, with their other tickets as links.
  // Another ticket of the same contact, opened through a session of theirs.
  const session = await fetch(`${server.base}/v1/init-session`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Origin: host.origin },
    body: JSON.stringify({ project_id: project.id, identity: identity("u-100") }),
  }).then((r) => r.json());
  const opened = await fetch(`${server.base}/v1/tickets/${project.id}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${session.token}`, Origin: host.origin },
    body: JSON.stringify({ title: "Where is my invoice?" }),
  });
  assert.equal(opened.status, 201);
  const agent = await page(t, "agent", { viewport: { width: 1280, height: 800 }, bypassCSP: true });
  await agent.goto(`${server.base}/inbox`);
  await agent.getByLabel("Project id").fill(project.id);
  await agent.getByLabel("Admin key").fill(project.key);
  await agent.getByLabel("Your name").fill("Sam");
  await agent.getByRole("button", { name: "Sign in" }).click();
  await agent.getByRole("status").filter({ hasText: "Live" }).waitFor();
  await agent.locator(`[data-slug="${slug}"]`).click();
  const card = agent.locator("aside.contact-card");
  await card.getByText("Ada Lovelace").waitFor();
  await card.getByText("Verified").waitFor();
  await card.getByText("ada@example.com").waitFor();
  await card.getByText("u-100").waitFor();
  const other = card.getByRole("button", { name: "Where is my invoice?" });
  await other.waitFor();
  await shot(agent, "identity-inbox-contact-card");
  await other.click();
  await agent.locator(".ticket-head h1", { hasText: "Where is my invoice?" }).waitFor();
});

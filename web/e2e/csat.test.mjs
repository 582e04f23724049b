// Satisfaction (CSAT), round trip: a visitor asks for a person, the agent resolves the ticket
// in the inbox, the widget asks the visitor for a rating, the visitor gives 4 of 5 with a
// comment, the inbox shows it live (thread and list), and a signed `ticket.rated` webhook goes
// out. The widget never asks again for that ticket, after a reload or after "No thanks".
// Screenshots go to target/e2e/.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";

import { browser, createProject, shot, startHostPage, startServer } from "./harness.mjs";

const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

let server, project, host, chromium, receiver, secret;
const received = [];

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
    http.listen(0, "127.0.0.1", () => done({ url: `http://127.0.0.1:${http.address().port}/hooks`, close: () => new Promise((r) => http.close(r)) }));
  });
}

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
  server = await startServer({ env: { FLEETY_WEBHOOK_ALLOW_PRIVATE: "true", FLEETY_PUBLIC_RATE_LIMIT: "100" } });
  host = await startHostPage(server.base);
  project = await createProject(server.base, [host.origin], "Csat");
  host.project = project.id;
  const hook = await admin("POST", `/v1/projects/${project.id}/webhooks`, { url: receiver.url, events: ["ticket.rated"] });
  secret = hook.secret;
  chromium = await browser();
});

after(async () => {
  await chromium?.close();
  await host?.close();
  await server?.stop();
  await receiver?.close();
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
  await widget.locator("textarea").first().waitFor();
  return widget;
}

async function askForPerson(widget) {
  await widget.getByRole("button", { name: "Talk to a person" }).click();
  const notice = widget.locator(".notice").filter({ hasText: "is open" }).last();
  await notice.waitFor();
  return /Ticket (\S+) is open/.exec(await notice.textContent())[1];
}

async function axe(target, where) {
  // Evaluated rather than added as a script element, which the host page's CSS would show.
  await target.evaluate(AXE);
  const result = await target.evaluate(async () => await window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(
    bad.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`),
    [],
    `${where}: serious or critical accessibility violations`,
  );
}

test("resolved in the inbox, rated in the widget, shown in the inbox, announced by webhook", async (t) => {
  const visitor = await page(t, "visitor");
  let widget = await openWidget(visitor);
  const slug = await askForPerson(widget);

  const agent = await page(t, "agent", { viewport: { width: 1280, height: 800 }, bypassCSP: true });
  await agent.goto(`${server.base}/inbox`);
  await agent.getByLabel("Project id").fill(project.id);
  await agent.getByLabel("Admin key").fill(project.key);
  await agent.getByLabel("Your name").fill("Sam");
  await agent.getByRole("button", { name: "Sign in" }).click();
  await agent.getByRole("status").filter({ hasText: "Live" }).waitFor();
  await agent.locator(`[data-slug="${slug}"]`).click();
  await agent.locator(".ticket-head select").selectOption("resolved");

  // The widget asks, live, once the ticket is resolved.
  const survey = widget.locator("form.survey");
  await survey.getByText("How did we do?").waitFor();
  await shot(visitor, "csat-widget-asks");
  await axe(visitor, "the widget's survey");
  await survey.getByRole("radio", { name: "4 of 5" }).click();
  await survey.getByLabel("Anything to add? (optional)").fill("Quick and **kind**, thanks!");
  await shot(visitor, "csat-widget-chosen");
  await survey.getByRole("button", { name: "Send rating" }).click();
  await widget.locator(".survey.thanks").filter({ hasText: "You rated this conversation 4 of 5." }).waitFor();
  assert.equal(await survey.count(), 0, "the survey is gone once rated");
  await shot(visitor, "csat-widget-thanks");

  // The inbox shows the rating without a reload: in the thread and in the list.
  const given = agent.locator(".csat-given");
  await given.filter({ hasText: "The visitor rated this conversation 4 of 5" }).waitFor();
  assert.match(await given.textContent(), /Quick and \*\*kind\*\*, thanks!/, "the comment is shown as written, as text");
  await agent.locator(`[data-slug="${slug}"] .csat[aria-label="Rated 4 of 5"]`).waitFor();
  await shot(agent, "csat-inbox-thread");
  await axe(agent, "the inbox with a rating");

  // The webhook: signed, with the ticket and its rating.
  const hit = await waitFor("the ticket.rated webhook", () => received.find((r) => JSON.parse(r.body).type === "ticket.rated"));
  const key = Buffer.from(secret.slice("whsec_".length), "base64");
  const signed = `${hit.headers["webhook-id"]}.${hit.headers["webhook-timestamp"]}.${hit.body}`;
  assert.ok(hit.headers["webhook-signature"].split(" ").includes(`v1,${createHmac("sha256", key).update(signed).digest("base64")}`));
  const payload = JSON.parse(hit.body);
  assert.equal(payload.data.ticket.slug, slug);
  assert.equal(payload.data.satisfaction.score, 4);
  assert.equal(payload.data.satisfaction.comment, "Quick and **kind**, thanks!");

  // Never asked again: not after a reload.
  await visitor.reload();
  widget = visitor.locator("fleety-widget");
  await widget.locator(".launcher").click();
  await widget.locator(".notice").filter({ hasText: "Status" }).first().waitFor();
  assert.equal(await widget.locator("form.survey").count(), 0, "asked again after a reload");
});

test("a visitor who declines is not asked again, and a project that turns the survey off asks nobody", async (t) => {
  const visitor = await page(t, "visitor");
  const widget = await openWidget(visitor);
  const slug = await askForPerson(widget);
  await admin("PATCH", `/v1/tickets/${project.id}/${slug}`, { status: "resolved" });
  const survey = widget.locator("form.survey");
  await survey.waitFor();
  await survey.getByRole("button", { name: "No thanks" }).click();
  await survey.waitFor({ state: "detached" });
  await visitor.reload();
  await visitor.locator("fleety-widget .launcher").click();
  await visitor.locator("fleety-widget .notice").filter({ hasText: "Status" }).first().waitFor();
  assert.equal(await visitor.locator("fleety-widget form.survey").count(), 0, "asked again after declining");
  const ticket = await admin("GET", `/v1/tickets/${project.id}/${slug}`);
  assert.equal(ticket.satisfaction, null, "declining rates nothing");

  // Turned off in the inbox's settings: a new visitor's resolved ticket asks for nothing.
  const agent = await page(t, "agent", { viewport: { width: 1280, height: 900 } });
  await agent.goto(`${server.base}/inbox`);
  await agent.getByLabel("Project id").fill(project.id);
  await agent.getByLabel("Admin key").fill(project.key);
  await agent.getByRole("button", { name: "Sign in" }).click();
  await agent.getByRole("button", { name: "Settings" }).click();
  const box = agent.getByLabel("Ask visitors to rate resolved tickets");
  // Locked until the saved setting arrives.
  await agent.locator("#csat-title ~ label.check input:not([disabled])").waitFor();
  assert.equal(await box.isChecked(), true);
  await box.uncheck();
  await agent.getByText("Visitors are not asked.").waitFor();
  await agent.locator("#csat-title").scrollIntoViewIfNeeded();
  await shot(agent, "csat-inbox-settings");
  assert.equal((await admin("GET", `/v1/projects/${project.id}`)).csat_enabled, false);

  const other = await page(t, "second visitor");
  const second = await openWidget(other);
  const slug2 = await askForPerson(second);
  await admin("PATCH", `/v1/tickets/${project.id}/${slug2}`, { status: "resolved" });
  await second.locator(".notice").filter({ hasText: "resolved" }).waitFor();
  assert.equal(await second.locator("form.survey").count(), 0, "asked although the project turned the survey off");
  await admin("PATCH", `/v1/projects/${project.id}`, { csat_enabled: true });
});

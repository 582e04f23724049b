// Who the visitor is, as the page says: a site that knows its visitor queues
// `setVisitor` with their name and email; the ticket the widget's "Talk to a person" opens
// carries them, and the inbox's list shows the name. What the server would refuse (an email
// that is not one, a name too long) is left out with a warning, and the ticket still opens.
// Screenshots go to target/e2e/.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { browser, createProject, shot, startHostPage, startServer } from "./harness.mjs";

let server, project, known, wrong, chromium;

before(async () => {
  server = await startServer({ env: { FLEETY_PUBLIC_RATE_LIMIT: "100" } });
  known = await startHostPage(server.base, {
    script: `Fleety.push(['setVisitor', { name: 'Dana Scully', email: 'dana@example.com' }]);`,
  });
  wrong = await startHostPage(server.base, {
    script: `Fleety.push(['setVisitor', { name: '${"x".repeat(81)}', email: 'not an email' }]);`,
  });
  project = await createProject(server.base, [known.origin, wrong.origin], "Visitors");
  known.project = project.id;
  wrong.project = project.id;
  chromium = await browser();
});

after(async () => {
  await chromium?.close();
  await known?.close();
  await wrong?.close();
  await server?.stop();
});

async function page(t, who, options) {
  const context = await chromium.newContext(options);
  t.after(() => context.close());
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`${who} page error:`, e.message));
  return page;
}

/** Opens the widget on `host`, asks for a person with the button; the ticket's slug. */
async function talkToAPerson(t, host, warnings = []) {
  const visitor = await page(t, "visitor", { viewport: { width: 1100, height: 760 } });
  visitor.on("console", (m) => m.type() === "warning" && warnings.push(m.text()));
  await visitor.goto(host.origin);
  const widget = visitor.locator("fleety-widget");
  await widget.locator(".launcher").click();
  await widget.getByRole("button", { name: "Talk to a person" }).click();
  const notice = widget.locator(".notice").filter({ hasText: "is open" });
  await notice.waitFor();
  return /Ticket (\S+) is open/.exec(await notice.textContent())[1];
}

async function ticket(slug) {
  const r = await fetch(`${server.base}/v1/tickets/${project.id}/${slug}`, { headers: { Authorization: `Bearer ${project.key}` } });
  assert.equal(r.status, 200);
  return r.json();
}

test("the name and email the page sets go with the ticket, and the inbox lists the name", async (t) => {
  const slug = await talkToAPerson(t, known);
  assert.deepEqual((await ticket(slug)).visitor, { name: "Dana Scully", email: "dana@example.com" });

  const agent = await page(t, "agent", { viewport: { width: 1280, height: 800 } });
  await agent.goto(`${server.base}/inbox`);
  await agent.getByLabel("Project id").fill(project.id);
  await agent.getByLabel("Admin key").fill(project.key);
  await agent.getByLabel("Your name").fill("Alex");
  await agent.getByRole("button", { name: "Sign in" }).click();
  const row = agent.locator(".ticket", { hasText: slug });
  await row.waitFor();
  assert.equal((await row.locator(".visitor").textContent()).trim(), "Dana Scully");
  await row.click();
  await agent.locator(".ticket-head .sub", { hasText: "Dana Scully <dana@example.com>" }).waitFor();
  await shot(agent, "inbox-visitor-named");
});

test("a name or email the server would refuse is left out with a warning, and the ticket opens", async (t) => {
  const warnings = [];
  const slug = await talkToAPerson(t, wrong, warnings);
  assert.equal((await ticket(slug)).visitor ?? null, null);
  assert.ok(warnings.some((w) => w.includes("setVisitor's name")), warnings.join("\n"));
  assert.ok(warnings.some((w) => w.includes("setVisitor's email")), warnings.join("\n"));
});

// Assignment to members in the inbox: a signed-in agent assigns a ticket to themselves and
// another to a colleague with the picker, and the list's Mine, Unassigned and All views and its
// filter by assignee show each ticket where it belongs. A colleague deactivated by the owner
// leaves their ticket unassigned.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";

import { browser, createProject, shot, signIn, startServer } from "./harness.mjs";

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const OPERATOR = "e2e-operator-token-0123456789";
const PASSWORD = "correct horse battery";

let server, project, chromium, agent;
const members = {};

async function axe(page) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

async function addMember(email, name) {
  const r = await fetch(`${server.base}/v1/admin/projects/${project.id}/members`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${OPERATOR}` },
    body: JSON.stringify({ email, name, password: PASSWORD, role: "agent" }),
  });
  assert.equal(r.status, 201);
  members[name] = (await r.json()).id;
}

async function openTicket(title) {
  const r = await fetch(`${server.base}/v1/tickets/${project.id}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ title }),
  });
  assert.equal(r.status, 201);
  return (await r.json()).slug;
}

/** The titles the list shows, top to bottom. */
async function listed(page) {
  return page.locator(".list .ticket .title").allTextContents();
}

/** Waits until the list shows exactly `titles`, in any order. */
async function shows(page, titles) {
  const want = [...titles].sort();
  await page.waitForFunction(
    (want) => JSON.stringify([...document.querySelectorAll(".list .ticket .title")].map((e) => e.textContent).sort()) === JSON.stringify(want),
    want,
  );
  assert.deepEqual((await listed(page)).sort(), want);
}

before(async () => {
  server = await startServer();
  project = await createProject(server.base, ["http://127.0.0.1:9"], "Team");
  await addMember("eli@example.com", "Eli");
  await addMember("sam@example.com", "Sam");
  for (const title of ["Refund please", "Cannot log in", "Invoice address"]) await openTicket(title);
  chromium = await browser();
  const context = await chromium.newContext({ viewport: { width: 1280, height: 800 } });
  agent = await context.newPage();
  agent.on("pageerror", (e) => console.error("agent page error:", e.message));
  await signIn(agent, server.base, project.id, "eli@example.com");
});

after(async () => {
  await chromium?.close();
  await server?.stop();
});

test("Assign to me and the picker assign members, and the views show whose each ticket is", async () => {
  const all = ["Refund please", "Cannot log in", "Invoice address"];
  await shows(agent, all);
  const views = agent.getByRole("group", { name: "Whose tickets" });
  assert.deepEqual(await views.getByRole("button").allTextContents(), ["Mine", "Unassigned", "All"]);

  // Assign to me.
  await agent.locator(".ticket", { hasText: "Refund please" }).click();
  await agent.getByRole("heading", { name: "Refund please" }).waitFor();
  await agent.getByRole("button", { name: "Assign to me" }).click();
  await agent.getByRole("button", { name: "Unassign me" }).waitFor();
  const picker = agent.locator(".detail").getByLabel("Assignee");
  assert.equal(await picker.inputValue(), members.Eli);
  // The picker offers the project's members; Sam gets the next ticket.
  await agent.locator(".ticket", { hasText: "Cannot log in" }).click();
  await agent.getByRole("heading", { name: "Cannot log in" }).waitFor();
  const options = await agent.locator(".detail").getByLabel("Assignee").locator("option").allTextContents();
  assert.deepEqual(options, ["Unassigned", "Eli", "Sam"]);
  await agent.locator(".detail").getByLabel("Assignee").selectOption({ label: "Sam" });
  await agent.locator(".ticket", { hasText: "Cannot log in" }).filter({ hasText: "Sam" }).waitFor();

  await views.getByRole("button", { name: "Mine" }).click();
  await shows(agent, ["Refund please"]);
  assert.equal(await views.getByRole("button", { name: "Mine" }).getAttribute("aria-pressed"), "true");
  await shot(agent, "inbox-assignment-mine");
  assert.deepEqual(await axe(agent), []);
  await views.getByRole("button", { name: "Unassigned" }).click();
  await shows(agent, ["Invoice address"]);
  await views.getByRole("button", { name: "All" }).click();
  await shows(agent, all);
  // The filter by assignee: Sam's tickets.
  await agent.locator("#assignee-filter").selectOption({ label: "Sam" });
  await shows(agent, ["Cannot log in"]);
  await agent.locator("#assignee-filter").selectOption({ label: "Anyone" });
  await shows(agent, all);
  await shot(agent, "inbox-assignment-picker");
});

test("a deactivated member's ticket shows as unassigned", async () => {
  const r = await fetch(`${server.base}/v1/projects/${project.id}/members/${members.Sam}`, {
    method: "PATCH",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${project.key}` },
    body: JSON.stringify({ state: "deactivated" }),
  });
  assert.equal(r.status, 200);
  // The inbox reads whom it may offer when it opens.
  await agent.reload();
  await agent.getByRole("status").filter({ hasText: "Live" }).waitFor();
  await agent.getByRole("group", { name: "Whose tickets" }).getByRole("button", { name: "Unassigned" }).click();
  await shows(agent, ["Cannot log in", "Invoice address"]);
  await agent.locator(".ticket", { hasText: "Cannot log in" }).click();
  await agent.getByRole("heading", { name: "Cannot log in" }).waitFor();
  const picker = agent.locator(".detail").getByLabel("Assignee");
  await agent.waitForFunction(() => document.querySelector(".detail select.assignee-picker")?.value === "");
  assert.equal(await picker.inputValue(), "");
  // Sam is no longer offered.
  assert.deepEqual(await picker.locator("option").allTextContents(), ["Unassigned", "Eli"]);
});

// Canned replies: an agent saves one in the settings, then types `/` and part of its shortcut
// in a ticket's reply box, picks it from the list with the keyboard, and sends it with the
// placeholders filled in: their display name, and the fallback for a visitor without a name.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";

import { browser, createProject, shot, startServer } from "./harness.mjs";

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

let server, project, chromium, agent;

before(async () => {
  server = await startServer();
  project = await createProject(server.base, ["http://127.0.0.1:9"], "Canned");
  chromium = await browser();
  // CSP bypassed only so axe-core can be injected below.
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
});

/** Serious or critical accessibility violations axe-core finds on the page. */
async function axe(page) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

test("a canned reply saved in the settings is inserted with / and sent filled in", async () => {
  await agent.getByRole("button", { name: "Settings" }).click();
  const card = agent.locator("section", { has: agent.getByRole("heading", { name: "Canned replies" }) });
  await card.getByLabel(/^Reply name/).fill("Refund timeline");
  await card.getByLabel("Shortcut").fill("refund");
  await card.getByLabel(/^Reply text/).fill("Hi {{visitor.name}}, refunds take five working days. {{agent.name}}");
  await card.getByRole("button", { name: "Add canned reply" }).click();
  await card.getByRole("status").filter({ hasText: "Added /refund" }).waitFor();
  // A second one, so the picker has something to filter out.
  await card.getByLabel(/^Reply name/).fill("Greeting");
  await card.getByLabel("Shortcut").fill("hello");
  await card.getByLabel(/^Reply text/).fill("Hello {{visitor.name}}!");
  await card.getByRole("button", { name: "Add canned reply" }).click();
  await card.locator(".canned-list li", { hasText: "/hello" }).waitFor();
  // A typo in a placeholder is refused with the server's reason.
  await card.getByLabel(/^Reply name/).fill("Broken");
  await card.getByLabel("Shortcut").fill("broken");
  await card.getByLabel(/^Reply text/).fill("Hi {{visitor.email}}");
  await card.getByRole("button", { name: "Add canned reply" }).click();
  await card.getByRole("alert").filter({ hasText: "unknown placeholder {{visitor.email}}" }).waitFor();
  await shot(agent, "inbox-canned-settings");
  assert.deepEqual(await axe(agent), []);

  const r = await fetch(`${server.base}/v1/tickets/${project.id}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ title: "Where is my refund?" }),
  });
  assert.equal(r.status, 201);
  const { slug } = await r.json();
  await agent.getByRole("button", { name: /^Tickets/ }).click();
  await agent.locator(".ticket", { hasText: "Where is my refund?" }).click();

  const box = agent.getByLabel("Reply to the visitor");
  await box.click();
  await box.pressSequentially("Thanks for waiting. /ref");
  const picker = agent.getByRole("listbox", { name: "Canned replies" });
  await picker.waitFor();
  const options = picker.getByRole("option");
  // "ref" starts /refund's shortcut; /hello matches neither by shortcut nor by name.
  assert.deepEqual(await options.allTextContents().then((t) => t.map((s) => s.split(" ")[0])), ["/refund"]);
  assert.equal(await options.first().getAttribute("aria-selected"), "true");
  assert.equal(await box.getAttribute("aria-activedescendant"), await options.first().getAttribute("id"));
  await shot(agent, "inbox-canned-picker");
  assert.deepEqual(await axe(agent), []);
  await box.press("Enter");
  await picker.waitFor({ state: "detached" });
  const filled = "Thanks for waiting. Hi there, refunds take five working days. Sam";
  assert.equal(await box.inputValue(), filled);
  // The caret sits after the insertion: typing goes on from there.
  await box.pressSequentially(" :)");
  assert.equal(await box.inputValue(), `${filled} :)`);

  // Escape closes the picker and leaves what was typed.
  await box.pressSequentially(" /he");
  await picker.waitFor();
  await box.press("Escape");
  await picker.waitFor({ state: "detached" });
  assert.equal(await box.inputValue(), `${filled} :) /he`);
  await box.fill(`${filled} :)`);

  const sent = agent.waitForResponse((res) => res.url().endsWith("/messages") && res.request().method() === "POST");
  await agent.getByRole("button", { name: "Send reply" }).click();
  assert.equal((await sent).status(), 201);
  await agent.locator(".thread .msg.admin", { hasText: filled }).waitFor();
  const stored = await (await fetch(`${server.base}/v1/tickets/${project.id}/${slug}`)).json();
  assert.equal(stored.messages.at(-1).content, `${filled} :)`);
});

// The assistant's settings and what they change: an agent names the assistant, gives it a
// greeting and guidance in the inbox's settings (with counters at the server's limits), the
// widget greets by that name, and a question the help center cannot answer shows up on the
// knowledge-base page, most asked first, until the agent dismisses it.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { browser, createProject, shot, startHostPage, startServer } from "./harness.mjs";

let server, project, host, chromium, agent;
const GREETING = "Hi, I'm Ava from Acme. Ask me about orders and refunds.";

before(async () => {
  server = await startServer();
  host = await startHostPage(server.base);
  project = await createProject(server.base, [host.origin], "Acme");
  host.project = project.id;
  chromium = await browser();
  const context = await chromium.newContext({ viewport: { width: 1280, height: 900 } });
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
  await host?.close();
  await server?.stop();
});

async function visit() {
  const context = await chromium.newContext({ viewport: { width: 1000, height: 760 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(host.origin);
  const widget = page.locator("fleety-widget");
  await widget.locator(".launcher").waitFor();
  return { page, widget, close: () => context.close() };
}

test("an agent names the assistant and gives it a greeting and guidance, within the limits", async () => {
  await agent.getByRole("button", { name: "Settings" }).click();
  const save = agent.getByRole("button", { name: "Save assistant" });
  await agent.getByLabel(/^Name/).fill("Ava");
  await agent.getByLabel(/^Greeting/).fill("x".repeat(501));
  assert.equal((await agent.locator("#assistant-greeting-count").textContent()).trim(), "501 / 500");
  assert.ok(await save.isDisabled(), "a greeting over the limit cannot be saved");
  await agent.getByLabel(/^Greeting/).fill(GREETING);
  await agent.getByLabel(/^Guidance/).fill("Be warm and brief.\nNever promise delivery dates.");
  assert.equal((await agent.locator("#assistant-name-count").textContent()).trim(), "3 / 60");
  await save.click();
  await agent.locator(".card", { hasText: "Assistant" }).getByRole("status").filter({ hasText: "Saved." }).waitFor();
  await shot(agent, "inbox-assistant-settings");

  // The server has them.
  const r = await fetch(`${server.base}/v1/projects/${project.id}`, { headers: { Authorization: `Bearer ${project.key}` } });
  const saved = await r.json();
  assert.equal(saved.assistant_name, "Ava");
  assert.equal(saved.assistant_greeting, GREETING);
  assert.equal(saved.assistant_guidance, "Be warm and brief.\nNever promise delivery dates.");

  // And the page shows them again after a reload.
  await agent.reload();
  await agent.getByRole("button", { name: "Settings" }).click();
  await agent.waitForFunction(() => document.querySelector("input[placeholder='Ava']")?.value === "Ava");
  assert.equal(await agent.getByLabel(/^Greeting/).inputValue(), GREETING);
});

test("the widget greets the visitor with the project's greeting and the assistant's name", async () => {
  const { widget, page, close } = await visit();
  await widget.locator(".launcher").click();
  const greeting = widget.locator(".bubble.greeting");
  await greeting.filter({ hasText: GREETING }).waitFor();
  assert.equal(await widget.locator(".message.assistant .who").first().textContent(), "Ava");
  await shot(page, "widget-greeting");

  // Its answers are signed with the name too.
  const input = widget.locator("textarea");
  await input.fill("Hello!");
  await input.press("Enter");
  const answer = widget.locator(".message.assistant").last();
  await answer.locator(".bubble").filter({ hasText: GREETING }).waitFor();
  assert.equal(await answer.locator(".who").textContent(), "Ava");
  await close();
});

test("a question the help center cannot answer is listed for the agent, who dismisses it", async () => {
  const question = "Can I export my dashboards to PDF?";
  for (const wording of [question, "can i export my dashboards to pdf"]) {
    const { widget, close } = await visit();
    await widget.locator(".launcher").click();
    const input = widget.locator("textarea");
    await input.fill(wording);
    await input.press("Enter");
    await widget.locator(".message.assistant .bubble").last().filter({ hasText: "Shall I pass this to the team?" }).waitFor();
    await close();
  }
  await agent.getByRole("button", { name: "Knowledge base" }).click();
  const list = agent.locator(".unanswered");
  await list.getByRole("heading", { name: "Unanswered questions" }).waitFor();
  const row = list.locator("li.question", { hasText: /export my dashboards to pdf/i });
  await row.waitFor();
  assert.equal((await row.locator(".count").textContent()).trim(), "2×");
  await shot(agent, "inbox-unanswered");

  // "Write article" starts an article titled by the question.
  await row.getByRole("button", { name: "Write article" }).click();
  assert.match(await agent.getByLabel("Title").inputValue(), /export my dashboards to pdf/i);

  await row.getByRole("button", { name: /^Dismiss/ }).click();
  await row.waitFor({ state: "detached" });
  await list.getByText("None so far.").waitFor();
  const r = await fetch(`${server.base}/v1/projects/${project.id}/kb/unanswered`, { headers: { Authorization: `Bearer ${project.key}` } });
  assert.deepEqual((await r.json()).questions, []);
});

test("an agent writes an article in German with a link, then takes the link away", async () => {
  await agent.getByRole("button", { name: "Knowledge base" }).click();
  await agent.getByRole("button", { name: "New article" }).click();
  const form = agent.locator("form.article");
  await form.getByLabel("Title").fill("Rückerstattungen");
  await form.getByLabel(/^Body/).fill("Rückerstattungen dauern fünf Werktage.");
  await form.getByLabel(/^Language/).selectOption("de");
  await form.getByLabel(/^Link/).fill("https://help.example.com/de/rueckerstattung");
  await form.getByRole("button", { name: "Create" }).click();
  await form.getByRole("status").filter({ hasText: "Article created." }).waitFor();
  await shot(agent, "inbox-article-language");

  const headers = { Authorization: `Bearer ${project.key}` };
  const find = async () => {
    const r = await fetch(`${server.base}/v1/projects/${project.id}/kb/articles`, { headers });
    return (await r.json()).articles.find((a) => a.title === "Rückerstattungen");
  };
  const created = await find();
  assert.equal(created.language, "de");
  assert.equal(created.url, "https://help.example.com/de/rueckerstattung");

  // An empty link field removes the link; the language stays.
  await form.getByLabel(/^Link/).fill("");
  await form.getByRole("button", { name: "Save" }).click();
  await form.getByRole("status").filter({ hasText: "Article saved." }).waitFor();
  const saved = await find();
  assert.equal(saved.language, "de");
  assert.equal(saved.url ?? null, null);
  // Opened again from the list, the article shows what it holds.
  await agent.getByRole("button", { name: "New article" }).click();
  await agent.locator(".list button", { hasText: "Rückerstattungen" }).click();
  assert.equal(await form.getByLabel(/^Language/).inputValue(), "de");
  assert.equal(await form.getByLabel(/^Link/).inputValue(), "");
});

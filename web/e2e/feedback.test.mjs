// Knowing how the assistant does: a visitor rates an answer in the widget, and the agent sees
// the rating in the ticket's chat and the figures in the inbox's settings. The assistant is the
// built-in offline one, answering from the project's one article (on refunds).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { browser, createProject, shot, startHostPage, startServer } from "./harness.mjs";

let server, project, host, chromium;

before(async () => {
  server = await startServer();
  host = await startHostPage(server.base);
  project = await createProject(server.base, [host.origin], "Feedback");
  host.project = project.id;
  chromium = await browser();
});

after(async () => {
  await chromium?.close();
  await host?.close();
  await server?.stop();
});

async function page(t, who, options) {
  const context = await chromium.newContext(options);
  t.after(() => context.close());
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`${who} page error:`, e.message));
  return page;
}

test("a thumbs up in the widget reaches the agent's inbox", async (t) => {
  const visitor = await page(t, "visitor", { viewport: { width: 1100, height: 760 } });
  await visitor.goto(host.origin);
  const widget = visitor.locator("fleety-widget");
  await widget.locator(".launcher").click();
  const input = widget.locator("textarea");
  await input.fill("How long do refunds take?");
  await input.press("Enter");
  const answer = widget.locator(".message.assistant").last();
  await answer.locator(".bubble").filter({ hasText: /five working days/ }).waitFor();
  await widget.locator(".typing").waitFor({ state: "hidden" });

  const up = answer.getByRole("button", { name: "Helpful", exact: true });
  await up.click();
  // Pressed once the server has stored it.
  await answer.locator('button.rate.up[aria-pressed="true"]').waitFor();
  assert.equal(await answer.locator("button.rate.down").getAttribute("aria-pressed"), "false");
  await shot(visitor, "widget-rated");

  await widget.getByRole("button", { name: "Talk to a person" }).click();
  const notice = widget.locator(".notice").filter({ hasText: "is open" });
  await notice.waitFor();
  const slug = /Ticket (\S+) is open/.exec(await notice.textContent())[1];

  const agent = await page(t, "agent", { viewport: { width: 1280, height: 800 } });
  await agent.goto(`${server.base}/inbox`);
  await agent.getByLabel("Project id").fill(project.id);
  await agent.getByLabel("Admin key").fill(project.key);
  await agent.getByLabel("Your name").fill("Alex");
  await agent.getByRole("button", { name: "Sign in" }).click();
  await agent.getByRole("status").filter({ hasText: "Live" }).waitFor();
  await agent.locator(".ticket", { hasText: slug }).click();
  // The chat is the ticket's first messages: the rating shows on the answer there, once.
  const rated = agent.locator(".thread .msg.assistant", { hasText: "five working days" });
  await rated.locator(".feedback.up", { hasText: "Helpful" }).waitFor();
  assert.equal(await rated.count(), 1);
  assert.equal(await agent.locator(".transcript").count(), 0);
  await shot(agent, "inbox-chat-rating");

  // The settings page counts the hand-off and the rating.
  await agent.getByRole("button", { name: "Settings" }).click();
  const panel = agent.locator(".outcomes");
  await panel.locator('[data-outcome="escalated"] dd', { hasText: /^1/ }).waitFor();
  await panel.locator('[data-outcome="up"] dd', { hasText: "1" }).waitFor();
  await shot(agent, "inbox-outcomes");
});

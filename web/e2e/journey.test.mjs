// A visitor and an agent, each in their own browser, from the first question to a conversation
// that survives a dropped network and a reload. Screenshots go to target/e2e/.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";

import { startFakeModel } from "./fake-model.mjs";
import { browser, createProject, shot, startHostPage, startServer, writeArtifact } from "./harness.mjs";

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

let model, server, project, host, chromium, visitorContext, agentContext, visitor, agent;

const widget = () => visitor.locator("fleety-widget");

before(async () => {
  model = await startFakeModel();
  server = await startServer({
    env: { FLEETY_LLM_BASE_URL: model.baseUrl, FLEETY_LLM_MODEL: "e2e", FLEETY_PUBLIC_RATE_LIMIT: "100" },
  });
  host = await startHostPage(server.base);
  project = await createProject(server.base, [host.origin]);
  host.project = project.id;
  chromium = await browser();
  visitorContext = await chromium.newContext({ viewport: { width: 1100, height: 760 } });
  // The inbox's CSP forbids inline scripts; axe-core is injected as one.
  agentContext = await chromium.newContext({ viewport: { width: 1280, height: 800 }, bypassCSP: true });
  visitor = await visitorContext.newPage();
  agent = await agentContext.newPage();
  for (const [who, page] of [["visitor", visitor], ["agent", agent]]) {
    page.on("pageerror", (e) => console.error(`${who} page error:`, e.message));
  }
});

after(async () => {
  await chromium?.close();
  await host?.close();
  await server?.stop();
  await model?.close();
});

/** Serious or critical accessibility violations axe-core finds on the page. */
async function axe(page) {
  await page.addScriptTag({ content: AXE });
  const results = await page.evaluate(async () => {
    // The host page's hostile CSS is not ours to judge: only the widget and our own pages.
    const target = document.querySelector("fleety-widget") ? { include: [["fleety-widget"]] } : document;
    const r = await window.axe.run(target, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help }));
  });
  return results.filter((v) => v.impact === "serious" || v.impact === "critical");
}

test("an agent signs in to the inbox", async () => {
  await agent.goto(`${server.base}/inbox`);
  await agent.getByLabel("Project id").fill(project.id);
  await agent.getByLabel("Admin key").fill(project.key);
  await agent.getByLabel("Your name").fill("Alex");
  await agent.getByRole("button", { name: "Sign in" }).click();
  await agent.getByRole("status").filter({ hasText: "Live" }).waitFor();
  // The key is in this tab's session storage, never in the address bar.
  assert.ok(!agent.url().includes(project.key));
  const stored = await agent.evaluate(() => JSON.stringify(sessionStorage));
  assert.ok(stored.includes(project.key));
  assert.deepEqual(await axe(agent), []);
});

test("the widget draws its launcher on a page with hostile CSS", async () => {
  await visitor.goto(host.origin);
  const launcher = widget().locator(".launcher");
  await launcher.waitFor();
  const box = await launcher.boundingBox();
  // Fixed in the bottom right corner at its own size, whatever the page's CSS says.
  assert.equal(Math.round(box.width), 56);
  assert.ok(box.x > 1000 && box.y > 650, JSON.stringify(box));
  await shot(visitor, "widget-closed");
});

test("the visitor asks a question and watches the answer stream in, with its sources", async () => {
  await widget().locator(".launcher").click();
  const input = widget().locator("textarea");
  await input.waitFor();
  assert.equal(await input.evaluate((el) => el.getRootNode().activeElement === el), true, "focus moves into the panel");
  await shot(visitor, "widget-open");
  // Count how the answer's text grows: a streamed answer is seen at several lengths.
  await visitor.evaluate(() => {
    window.answerLengths = new Set();
    const root = document.querySelector("fleety-widget").shadowRoot;
    new MutationObserver(() => {
      const bubbles = root.querySelectorAll(".message.assistant .bubble");
      const last = bubbles[bubbles.length - 1];
      if (last) window.answerLengths.add(last.textContent.length);
    }).observe(root, { subtree: true, childList: true, characterData: true });
  });
  await input.fill("How long do refunds take?");
  await input.press("Enter");
  await widget().locator(".typing").waitFor();
  const answer = widget().locator(".message.assistant .bubble").last();
  await answer.filter({ hasText: "five working days" }).waitFor();
  await widget().locator(".source", { hasText: "Refunds" }).waitFor();
  const lengths = await visitor.evaluate(() => window.answerLengths.size);
  assert.ok(lengths >= 4, `the answer was seen at ${lengths} lengths`);
  await shot(visitor, "widget-answer");
});

test("asking for a person opens a ticket that appears live in the inbox", async () => {
  await widget().getByRole("button", { name: "Talk to a person" }).click();
  const notice = widget().locator(".notice").filter({ hasText: "is open" });
  await notice.waitFor();
  const slug = /Ticket (\S+) is open/.exec(await notice.textContent())[1];
  // No reload: the feed brings it.
  const row = agent.locator(".ticket", { hasText: slug });
  await row.waitFor({ timeout: 5000 });
  await row.click();
  await agent.locator(".thread .msg.user", { hasText: "How long do refunds take?" }).waitFor();
  await agent.locator(".transcript").waitFor();
  await shot(agent, "inbox-ticket");
  visitor.slug = slug;
});

test("the agent replies and the visitor sees it within a second", async () => {
  const reply = agent.getByLabel("Reply to the visitor");
  await reply.fill("Hi, I'm Alex. I can help with your refund.");
  // Typing in the inbox shows in the widget.
  await widget().locator(".typing").waitFor();
  const sent = agent.waitForResponse((r) => r.url().endsWith("/messages") && r.request().method() === "POST");
  await agent.getByRole("button", { name: "Send reply" }).click();
  await sent;
  const acknowledged = Date.now();
  await widget().locator(".message.admin", { hasText: "I can help with your refund" }).waitFor();
  const delay = Date.now() - acknowledged;
  writeArtifact("reply-delay-ms.txt", `${delay}\n`);
  assert.ok(delay < 1000, `the reply took ${delay} ms to show`);
  await shot(visitor, "widget-reply");
  assert.deepEqual(await axe(visitor), []);
  assert.deepEqual(await axe(agent), []);
});

test("a dropped network loses nothing and doubles nothing", async () => {
  await visitorContext.setOffline(true);
  // While the visitor is offline: the visitor writes, and the agent writes twice.
  const input = widget().locator("textarea");
  await input.fill("Are you still there?");
  await input.press("Enter");
  await widget().locator(".banner", { hasText: "offline" }).waitFor();
  await shot(visitor, "widget-offline");
  for (const text of ["First reply while you were away.", "Second reply while you were away."]) {
    await agent.getByLabel("Reply to the visitor").fill(text);
    await agent.getByRole("button", { name: "Send reply" }).click();
    await agent.locator(".thread .msg.admin", { hasText: text }).waitFor();
  }
  await visitorContext.setOffline(false);
  for (const text of ["First reply while you were away.", "Second reply while you were away.", "Are you still there?"]) {
    await widget().locator(".message", { hasText: text }).last().waitFor({ timeout: 15000 });
  }
  await widget().locator(".message.user", { hasText: "Are you still there?" }).locator(".meta").waitFor({ state: "detached" }).catch(() => undefined);
  // Each message exactly once, in the widget and on the server.
  const shown = await widget().locator(".message .bubble").allTextContents();
  writeArtifact("after-offline.json", JSON.stringify(shown, null, 2));
  for (const text of ["First reply while you were away.", "Second reply while you were away.", "Are you still there?"]) {
    assert.equal(shown.filter((t) => t === text).length, 1, `${text} shown ${shown.filter((t) => t === text).length} times`);
  }
  const stored = await (await fetch(`${server.base}/v1/tickets/${project.id}/${visitor.slug}`)).json();
  const contents = stored.messages.map((m) => m.content);
  assert.equal(contents.filter((c) => c === "Are you still there?").length, 1);
  assert.equal(contents.filter((c) => c === "First reply while you were away.").length, 1);
});

test("a reload finds the conversation again", async () => {
  await visitor.reload();
  await widget().locator(".launcher").click();
  await widget().locator(".message.admin", { hasText: "I can help with your refund" }).waitFor();
  await widget().locator(".message.user", { hasText: "Are you still there?" }).waitFor();
  // The slug and the session stay in the page's own storage, never in a URL.
  assert.ok(!visitor.url().includes(visitor.slug));
  const stored = await visitor.evaluate(() => Object.keys(localStorage).join(","));
  assert.match(stored, /fleety:v1:/);
  await shot(visitor, "widget-reloaded");
});

test("the help center finds articles", async () => {
  await widget().getByRole("tab", { name: "Help center" }).click();
  await widget().getByLabel("Search the help center").fill("refund");
  await widget().getByRole("button", { name: "Search" }).click();
  await widget().locator(".hits li", { hasText: "Refunds" }).waitFor();
  await widget().getByRole("tab", { name: "Chat" }).click();
});

test("the agent resolves the ticket and the visitor sees the status change", async () => {
  await agent.getByLabel("Status").last().selectOption("resolved");
  await widget().locator(".notice", { hasText: "resolved" }).waitFor();
  await shot(agent, "inbox-resolved");
});

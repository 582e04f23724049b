// The inbox thread of a long ticket and its timeline, and the widget's help center opening an
// article at the passage that matched: a ticket with 300 messages opens at its newest and pages
// back as the agent scrolls up, keeping what they read in place; status and tag changes show as
// entries with who and when, and are still there after a reload; a search result opens the
// whole article in the panel, scrolled to the matching passage. Screenshots go to target/e2e/.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { axe, browser, callApi, createProject, shot, startHostPage, startServer } from "./harness.mjs";

const MESSAGES = 300;

let server, project, host, chromium;

const call = (method, path, body) => callApi(server.base, project.key, method, path, body);

before(async () => {
  // 0 turns the per-IP limit off: the setup posts 300 messages in a few seconds.
  server = await startServer({ env: { FLEETY_PUBLIC_RATE_LIMIT: "0" } });
  host = await startHostPage(server.base);
  project = await createProject(server.base, [host.origin], "Thread");
  host.project = project.id;
  chromium = await browser();
});

after(async () => {
  await chromium?.close();
  await host?.close();
  await server?.stop();
});

async function signIn(context) {
  const agent = await context.newPage();
  agent.on("pageerror", (e) => console.error("agent page error:", e.message));
  await agent.goto(`${server.base}/inbox`);
  await agent.getByLabel("Project id").fill(project.id);
  await agent.getByLabel("Admin key").fill(project.key);
  await agent.getByLabel("Your name").fill("Alex");
  await agent.getByRole("button", { name: "Sign in" }).click();
  await agent.getByRole("status").filter({ hasText: "Live" }).waitFor();
  return agent;
}

test("a ticket with 300 messages opens at the newest and pages back as the agent scrolls up", async (t) => {
  const ticket = await call("POST", `/v1/tickets/${project.id}`, { title: "A very long conversation", description: "" });
  for (let i = 0; i < MESSAGES; i++) {
    await call("POST", `/v1/tickets/${project.id}/${ticket.slug}/messages`, { author: i % 2 ? "admin" : "user", content: `Message number ${i}` });
  }
  const context = await chromium.newContext({ viewport: { width: 1280, height: 800 } });
  t.after(() => context.close());
  const agent = await signIn(context);
  await agent.locator(".ticket", { hasText: "A very long conversation" }).click();
  const thread = agent.locator(".thread");
  const message = (i) => thread.locator(".msg", { hasText: new RegExp(`^.*Message number ${i}$`) });
  await message(MESSAGES - 1).waitFor();
  // The newest page only, scrolled to its end.
  assert.equal(await thread.locator(".msg").count(), 50);
  assert.equal(await message(0).count(), 0);
  const atBottom = await thread.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight);
  assert.ok(atBottom < 5, `the thread opens at its end (${atBottom}px above it)`);
  await shot(agent, "thread-long-newest");

  // Scrolling to the top brings the page before, and what was at the top stays in view.
  const firstShown = await thread.locator(".msg").first().textContent();
  await thread.evaluate((el) => el.scrollTo(0, 0));
  await thread.locator(".msg").nth(50).waitFor();
  await agent.waitForFunction(() => document.querySelectorAll(".thread .msg").length === 100);
  const stayed = thread.locator(".msg", { hasText: firstShown.slice(firstShown.indexOf("Message number")) });
  const box = await stayed.boundingBox();
  const view = await thread.boundingBox();
  assert.ok(box.y >= view.y - 5 && box.y < view.y + view.height, "the message read before the page came is still in view");
  await shot(agent, "thread-long-paged");

  // And so on, to the first message; no page twice.
  for (let pages = 2; pages < MESSAGES / 50; pages++) {
    await thread.evaluate((el) => el.scrollTo(0, 0));
    await agent.waitForFunction((n) => document.querySelectorAll(".thread .msg").length === n, (pages + 1) * 50);
  }
  await message(0).waitFor();
  assert.equal(await thread.locator(".msg").count(), MESSAGES);
  assert.equal(await thread.getByRole("button", { name: "Earlier messages" }).count(), 0);
  const texts = await thread.locator(".msg .body").allTextContents();
  assert.deepEqual(
    texts.map((s) => s.trim()),
    Array.from({ length: MESSAGES }, (_, i) => `Message number ${i}`),
  );
});

test("status and tag changes show in the thread with who and when, and survive a reload", async (t) => {
  const ticket = await call("POST", `/v1/tickets/${project.id}`, { title: "Where is my parcel", description: "" });
  await call("POST", `/v1/tickets/${project.id}/${ticket.slug}/messages`, { author: "user", content: "It has been two weeks." });
  const context = await chromium.newContext({ viewport: { width: 1280, height: 800 } });
  t.after(() => context.close());
  const agent = await signIn(context);
  await agent.locator(".ticket", { hasText: "Where is my parcel" }).click();
  const thread = agent.locator(".thread");
  await thread.locator(".msg", { hasText: "It has been two weeks." }).waitFor();

  await agent.getByLabel("Status").last().selectOption("pending");
  await thread.locator(".event", { hasText: "The admin key changed the status from open to pending" }).waitFor();
  await agent.getByLabel("Add a tag").fill("shipping");
  await agent.getByRole("button", { name: "Tag", exact: true }).click();
  await thread.locator(".event", { hasText: "The admin key added the tag shipping" }).waitFor();
  await agent.getByRole("button", { name: "Assign to me" }).click();
  await thread.locator(".event", { hasText: "The admin key assigned the ticket to Alex" }).waitFor();
  // The visitor's reply comes after the entries, and reopening by the visitor is theirs.
  await call("PATCH", `/v1/tickets/${project.id}/${ticket.slug}`, { status: "resolved" });
  const reply = await fetch(`${server.base}/v1/tickets/${project.id}/${ticket.slug}/messages`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ content: "Still nothing." }),
  });
  assert.equal(reply.status, 201);
  await thread.locator(".event", { hasText: "The visitor changed the status from resolved to open" }).waitFor();
  await thread.locator(".msg", { hasText: "Still nothing." }).waitFor();
  const order = async () =>
    (await thread.locator(".msg .body, .event").allTextContents()).map((s) => s.replace(/ · .*$/, "").trim());
  const expected = [
    "It has been two weeks.",
    "The admin key changed the status from open to pending",
    "The admin key added the tag shipping",
    "The admin key assigned the ticket to Alex",
    "The admin key changed the status from pending to resolved",
    "The visitor changed the status from resolved to open",
    "Still nothing.",
  ];
  assert.deepEqual(await order(), expected);
  // Each entry says when.
  assert.match(await thread.locator(".event time").first().getAttribute("datetime"), /^\d{4}-\d\d-\d\dT/);
  await shot(agent, "thread-timeline");
  assert.deepEqual(await axe(agent), []);

  // Stored with the ticket: a reload reads them back, in the same places.
  await agent.reload();
  await agent.getByRole("status").filter({ hasText: "Live" }).waitFor();
  await agent.locator(".ticket", { hasText: "Where is my parcel" }).click();
  await thread.locator(".msg", { hasText: "Still nothing." }).waitFor();
  assert.deepEqual(await order(), expected);

  const { entries } = await call("GET", `/v1/projects/${project.id}/tickets/${ticket.slug}/timeline`);
  assert.deepEqual(
    entries.map((e) => [e.field, e.actor.kind, e.from, e.to, e.added, e.removed]),
    [
      ["status", "admin_key", "open", "pending", [], []],
      ["tags", "admin_key", null, null, ["shipping"], []],
      ["assignee", "admin_key", null, "Alex", [], []],
      ["status", "admin_key", "pending", "resolved", [], []],
      ["status", "visitor", "resolved", "open", [], []],
    ],
  );
});

test("a help-center result opens the article in the panel at the matching passage", async (t) => {
  const filler = Array.from({ length: 14 }, (_, i) => `Section ${i + 1}. Our shipping partners handle parcels of every size, and the rates depend on the weight and the destination of each parcel.`);
  const body = [...filler, "Customs forms: parcels leaving the European Union need a customs declaration, which we print and attach for you.", "Tracking links arrive by email."].join("\n\n");
  await call("POST", `/v1/projects/${project.id}/kb/articles`, { title: "Shipping guide", body, tags: ["shipping"] });

  const context = await chromium.newContext({ viewport: { width: 1000, height: 760 } });
  t.after(() => context.close());
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(host.origin);
  const widget = page.locator("fleety-widget");
  await widget.locator(".launcher").click();
  await widget.getByRole("tab", { name: "Help center" }).click();
  await widget.getByRole("searchbox").fill("customs declaration");
  await widget.getByRole("button", { name: "Search" }).click();
  const hit = widget.locator(".hits button", { hasText: "Shipping guide" });
  await hit.waitFor();
  // The result's snippet is the start of the passage the search matched, a few paragraphs long.
  await hit.click();

  const article = widget.locator(".article");
  await article.locator("h2", { hasText: "Shipping guide" }).waitFor();
  const match = article.locator("p.match");
  assert.equal(await match.count(), 1);
  assert.match(await match.textContent(), /^Customs forms: parcels leaving the European Union/);
  // Scrolled to the passage, not left at the article's first lines.
  const panel = await article.boundingBox();
  const at = await match.boundingBox();
  assert.ok(at.y >= panel.y && at.y + at.height <= panel.y + panel.height, "the passage is in view");
  assert.ok(await article.evaluate((el) => el.scrollTop > 0), "the article is scrolled past its start");
  const firstLine = await article.locator("p", { hasText: "Section 1." }).boundingBox();
  assert.ok(firstLine.y + firstLine.height < panel.y, "the article's first lines are above the view");
  await shot(page, "widget-article-passage");
  assert.deepEqual(await axe(page, { include: "fleety-widget" }), []);

  // Back to the results, on the one opened.
  await article.getByRole("button", { name: /Back to results/ }).click();
  await hit.waitFor();
});

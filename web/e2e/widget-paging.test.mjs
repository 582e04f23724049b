// A long ticket in the widget: a ticket with 300 messages made over the API opens in the panel
// at its newest 50, and older pages come in on top as the visitor scrolls up, in order, none
// twice, to the very first message, the message the visitor was reading staying where it was
// (while "Loading earlier messages…" shows, too);
// a dropped socket then resumes after the newest message and brings what was missed once.
// Screenshots go to target/e2e/.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { browser, callApi, createProject, shot, startHostPage, startServer } from "./harness.mjs";

const MESSAGES = 300;
const PAGE = 50;

let server, project, host, chromium;

const call = (method, path, body) => callApi(server.base, project.key, method, path, body);

before(async () => {
  // 0 turns the per-address limit off: the setup posts 300 messages in a few seconds.
  server = await startServer({ env: { FLEETY_PUBLIC_RATE_LIMIT: "0" } });
  host = await startHostPage(server.base);
  project = await createProject(server.base, [host.origin], "Paging");
  host.project = project.id;
  chromium = await browser();
});

after(async () => {
  await chromium?.close();
  await host?.close();
  await server?.stop();
});

test("a ticket with 300 messages opens at the newest and pages back as the visitor scrolls up", async (t) => {
  const ticket = await call("POST", `/v1/tickets/${project.id}`, { title: "A long conversation", description: "" });
  const ids = [];
  for (let i = 0; i < MESSAGES; i++) {
    const posted = await call("POST", `/v1/tickets/${project.id}/${ticket.slug}/messages`, {
      author: i % 2 ? "admin" : "user",
      content: `Message number ${i}`,
    });
    ids.push(posted.data.id);
  }

  const context = await chromium.newContext({ viewport: { width: 1100, height: 760 } });
  t.after(() => context.close());
  // The visitor of this ticket: the widget finds it in the page's storage, as after a reload.
  await context.addInitScript(
    ({ key, slug }) => {
      if (!localStorage.getItem(key)) localStorage.setItem(key, JSON.stringify({ v: 1, chat: [], ticket: { slug, status: "open" } }));
    },
    { key: `fleety:v1:${project.id}`, slug: ticket.slug },
  );
  // The ticket's socket goes through the test, which can drop it and hold the next one.
  const sockets = [];
  let hold = Promise.resolve();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("visitor page error:", e.message));
  await page.routeWebSocket(/\/ws/, async (ws) => {
    sockets.push(ws);
    await hold;
    ws.connectToServer();
  });
  await page.goto(host.origin);
  const widget = page.locator("fleety-widget");
  await widget.locator(".launcher").click();
  const log = widget.locator(".log");
  const messages = log.locator(".message[data-id]");
  const message = (i) => log.locator(".message", { hasText: new RegExp(`Message number ${i}$`) });
  await message(MESSAGES - 1).waitFor();

  // The newest page only, scrolled to its end.
  assert.equal(await messages.count(), PAGE);
  assert.equal(await message(0).count(), 0);
  const above = await log.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight);
  assert.ok(above < 5, `the panel opens at the newest message (${above}px above the end)`);
  await shot(page, "widget-paging-newest");

  // The first older page is held on its way, to see the loading line: it goes in above what
  // the visitor reads without moving it.
  let letThrough;
  const held = new Promise((done) => (letThrough = done));
  await page.route(/\/v1\/tickets\/[^/]+\/[^/?]+\?.*before=/, async (route) => {
    await held;
    await route.continue();
  });
  const oldest = await messages.first().getAttribute("data-id");
  const top = await log.evaluate((el, id) => {
    el.scrollTo(0, 0);
    return el.querySelector(`[data-id="${id}"]`).getBoundingClientRect().top;
  }, oldest);
  await log.getByRole("status").filter({ hasText: "Loading earlier messages" }).waitFor();
  const loadingTop = await log.evaluate((el, id) => el.querySelector(`[data-id="${id}"]`).getBoundingClientRect().top, oldest);
  assert.ok(Math.abs(loadingTop - top) <= 2, `the loading line leaves the message in place (${top}px, then ${loadingTop}px)`);
  await shot(page, "widget-paging-loading");
  // Later pages pass at once.
  letThrough();

  // Each scroll to the top brings the page before it; the message at the top stays where it
  // was on the screen, and no message comes twice.
  for (let shown = PAGE; shown < MESSAGES; shown += PAGE) {
    const first = shown === PAGE ? oldest : await messages.first().getAttribute("data-id");
    // Where the oldest message shown sits once scrolled to the top, measured at once, before
    // the page that scroll asks for can arrive (the first one was measured above).
    const before =
      shown === PAGE
        ? top
        : await log.evaluate((el, id) => {
            el.scrollTo(0, 0);
            return el.querySelector(`[data-id="${id}"]`).getBoundingClientRect().top;
          }, first);
    await page.waitForFunction(
      (n) => document.querySelector("fleety-widget").shadowRoot.querySelectorAll(".log .message[data-id]").length === n,
      shown + PAGE,
    );
    if (shown === PAGE) await shot(page, "widget-paging-loaded");
    const after = await log.evaluate((el, id) => el.querySelector(`[data-id="${id}"]`).getBoundingClientRect().top, first);
    assert.ok(Math.abs(after - before) <= 2, `the message read stays in place (${before}px, then ${after}px) after page ${shown / PAGE + 1}`);
  }
  await message(0).waitFor();
  assert.equal(await messages.count(), MESSAGES);
  assert.equal(await log.getByRole("button", { name: "Show earlier messages" }).count(), 0, "nothing older to show");
  assert.equal(await log.locator(".older").count(), 0, "no loading line left");
  const shownIds = await messages.evaluateAll((els) => els.map((el) => el.getAttribute("data-id")));
  assert.deepEqual(shownIds, ids, "every message once, oldest first");
  const texts = await log.locator(".message[data-id] .bubble").allTextContents();
  assert.deepEqual(
    texts.map((s) => s.trim()),
    Array.from({ length: MESSAGES }, (_, i) => `Message number ${i}`),
  );
  await shot(page, "widget-paging-first");

  // The socket drops; two replies come while it is away; it resumes after the newest message
  // it has and brings both, once, at the end.
  let release;
  hold = new Promise((done) => (release = done));
  const dropped = sockets.length;
  await sockets[dropped - 1].close();
  await widget.locator(".banner", { hasText: "Reconnecting" }).waitFor();
  await call("POST", `/v1/tickets/${project.id}/${ticket.slug}/messages`, { author: "admin", content: "Missed reply one" });
  await call("POST", `/v1/tickets/${project.id}/${ticket.slug}/messages`, { author: "admin", content: "Missed reply two" });
  release();
  await log.locator(".message", { hasText: "Missed reply two" }).waitFor();
  const resumed = new URL(sockets[sockets.length - 1].url());
  assert.equal(resumed.searchParams.get("since"), ids[MESSAGES - 1], "the socket resumes after the newest message");
  const tail = await log.locator(".message[data-id] .bubble").allTextContents();
  assert.equal(tail.length, MESSAGES + 2);
  assert.deepEqual(tail.slice(-3).map((s) => s.trim()), [`Message number ${MESSAGES - 1}`, "Missed reply one", "Missed reply two"]);
});

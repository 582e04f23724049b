// The screens the README and docs/web.md show, taken on the demo site as a newcomer sees it:
// the widget on a desktop and on a phone (390 px), and the inbox of an owner signed in with
// their email: the list with its Mine/Unassigned/All views and search box, a ticket's thread
// with a reply and timeline entries, and the project's settings. Each is checked for what it
// must show and by axe-core. Screenshots go to target/e2e/screen-*.png; docs/images/ keeps
// copies (see docs/web.md, "Browser tests").

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { addMember, axe, browser, callApi, shot, signIn, startServer } from "./harness.mjs";

const PROJECT = "demo";

let server, key, chromium;
/** The setup's tickets' slugs, by title. */
const slugs = {};

const call = (method, path, body) => callApi(server.base, key, method, path, body);

before(async () => {
  // 0 turns the per-IP limit off: the setup makes a few dozen public requests at once.
  server = await startServer({ env: { FLEETY_PUBLIC_RATE_LIMIT: "0" } });
  key = readFileSync(join(server.dataDir, "demo-admin-key"), "utf8").trim();
  await addMember(server.base, PROJECT, { email: "olga@example.com", name: "Olga Petrova", role: "owner" });
  chromium = await browser();
  const tickets = [
    ["Parcel arrived damaged", { name: "Maya Lind", email: "maya@example.com" }, "The box was crushed and the mug inside is broken.", ["shipping"]],
    ["Charged twice for order 1042", { email: "tom@example.com" }, "I see two identical charges on my card statement.", ["billing"]],
    ["Cannot change my email address", { name: "Priya Nair" }, "The settings page says the address is already taken.", []],
    ["Do you ship to Norway?", undefined, "And how long does it take?", []],
  ];
  for (const [title, visitor, message, tags] of tickets) {
    const t = await call("POST", `/v1/tickets/${PROJECT}`, { title, description: "", visitor });
    slugs[title] = t.slug;
    await call("POST", `/v1/tickets/${PROJECT}/${t.slug}/messages`, { author: "user", content: message });
    if (tags.length) await call("PATCH", `/v1/tickets/${PROJECT}/${t.slug}`, { tags });
  }
});

after(async () => {
  await chromium?.close();
  await server?.stop();
});

/** The demo site with the widget open, after the visitor asked the assistant a question. */
async function widgetAnswered(t, options) {
  const context = await chromium.newContext(options);
  t.after(() => context.close());
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(`${server.base}/`);
  const widget = page.locator("fleety-widget");
  await widget.locator(".launcher").click();
  const input = widget.locator("textarea");
  await input.fill("How do I reset my password?");
  await input.press("Enter");
  await widget.locator(".message.user", { hasText: "reset my password" }).waitFor();
  await widget.locator(".message.assistant .bubble").last().filter({ hasText: /password/i }).waitFor();
  await widget.locator(".typing").waitFor({ state: "hidden" });
  return { page, widget };
}

test("the widget on a desktop", async (t) => {
  const { page, widget } = await widgetAnswered(t, { viewport: { width: 1280, height: 800 } });
  const box = await widget.getByRole("dialog").boundingBox();
  assert.ok(box.width < 640, `a panel in the corner, not the whole page: ${JSON.stringify(box)}`);
  await shot(page, "screen-widget-desktop");
  assert.deepEqual(await axe(page, { include: "fleety-widget" }), []);
});

test("the widget on a phone", async (t) => {
  const { page, widget } = await widgetAnswered(t, { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
  const box = await widget.getByRole("dialog").boundingBox();
  assert.ok(box.width >= 389 && box.height >= 843, `the whole screen: ${JSON.stringify(box)}`);
  await shot(page, "screen-widget-phone");
  assert.deepEqual(await axe(page, { include: "fleety-widget" }), []);
});

test("the inbox: the list, a thread and the settings", async (t) => {
  const context = await chromium.newContext({ viewport: { width: 1280, height: 800 } });
  t.after(() => context.close());
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("inbox page error:", e.message));
  await signIn(page, server.base, PROJECT, "olga@example.com");

  // The list: the views, the search box, and each ticket with its visitor and tags.
  const views = page.getByRole("group", { name: "Whose tickets" });
  assert.deepEqual(await views.getByRole("button").allTextContents(), ["Mine", "Unassigned", "All"]);
  await page.getByLabel("Search tickets").waitFor();
  const row = (title) => page.locator(".ticket", { hasText: title });
  await row("Parcel arrived damaged").locator(".visitor", { hasText: "Maya Lind" }).waitFor();
  await row("Charged twice for order 1042").locator(".tag", { hasText: "billing" }).waitFor();
  await shot(page, "screen-inbox-list");
  assert.deepEqual(await axe(page), []);

  // A thread: the owner takes the ticket, tags it, and replies with a little Markdown.
  await row("Parcel arrived damaged").click();
  await page.getByRole("heading", { name: "Parcel arrived damaged" }).waitFor();
  const thread = page.locator(".thread");
  await page.getByRole("button", { name: "Assign to me" }).click();
  await thread.locator(".event", { hasText: "Olga Petrova took the ticket" }).waitFor();
  await page.getByLabel("Add a tag").fill("refund");
  await page.getByRole("button", { name: "Tag", exact: true }).click();
  await thread.locator(".event", { hasText: "added the tag refund" }).waitFor();
  await page.getByLabel("Reply to the visitor").fill("Sorry about the mug, Maya. **A new one is on its way**, and there is nothing to send back.");
  await page.getByRole("button", { name: "Send reply" }).click();
  await thread.locator(".msg.admin strong", { hasText: "A new one is on its way" }).waitFor();
  await call("POST", `/v1/tickets/${PROJECT}/${slugs["Parcel arrived damaged"]}/messages`, { author: "user", content: "Thank you, that was quick!" });
  await thread.locator(".msg.user", { hasText: "that was quick" }).waitFor();
  await shot(page, "screen-inbox-thread");
  assert.deepEqual(await axe(page), []);

  // The project's settings.
  await page.getByRole("navigation", { name: "Views" }).getByRole("button", { name: "Settings" }).click();
  await page.getByRole("heading", { name: "Assistant", exact: true }).waitFor();
  await page.getByRole("heading", { name: "Allowed origins" }).waitFor();
  await shot(page, "screen-inbox-settings");
  assert.deepEqual(await axe(page), []);
});

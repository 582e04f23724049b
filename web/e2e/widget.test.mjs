// The widget's own promises, beyond the main journey: commands queued before it loads, keyboard
// use with focus kept in the open panel, right-to-left Arabic, dark mode, and a rate limit that
// is shown to the visitor rather than swallowed. The assistant is the built-in offline one.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { browser, createProject, shot, startHostPage, startServer } from "./harness.mjs";

let server, project, host, chromium;

before(async () => {
  // Two questions a minute per visitor, so the third is refused.
  server = await startServer({ env: { FLEETY_CHAT_SESSION_REQUESTS_PER_MINUTE: "2" } });
  host = await startHostPage(server.base);
  project = await createProject(server.base, [host.origin], "Widget");
  host.project = project.id;
  chromium = await browser();
});

after(async () => {
  await chromium?.close();
  await host?.close();
  await server?.stop();
});

async function visit(options = {}) {
  const context = await chromium.newContext({ viewport: { width: 1000, height: 760 }, ...options });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(host.origin);
  const widget = page.locator("fleety-widget");
  await widget.locator(".launcher").waitFor();
  return { page, widget, close: () => context.close() };
}

/** The element focused inside the widget's shadow root, described. */
function focused(page) {
  return page.evaluate(() => {
    const root = document.querySelector("fleety-widget").shadowRoot;
    const el = root.activeElement;
    if (!el) return null;
    return { tag: el.tagName.toLowerCase(), cls: el.className, inDialog: !!el.closest(".dialog") };
  });
}

test("commands queued before the script loaded take effect, and more can follow", async () => {
  const { page, widget, close } = await visit();
  // The host page queued setTheme (#0b7285) before the script tag.
  const accent = await widget.locator(".launcher").evaluate((el) => getComputedStyle(el).backgroundColor);
  assert.equal(accent, "rgb(11, 114, 133)");
  await page.evaluate(() => window.Fleety.push(["open"]));
  await widget.getByRole("dialog").waitFor();
  await page.evaluate(() => window.Fleety.push(["setTheme", { position: "left" }]));
  const box = await widget.locator(".launcher").boundingBox();
  assert.ok(box.x < 100, `the launcher moved left: ${JSON.stringify(box)}`);
  await page.evaluate(() => window.Fleety.push(["close"]));
  await widget.getByRole("dialog").waitFor({ state: "hidden" });
  await close();
});

test("the keyboard opens the panel, Tab stays inside it, and Escape closes it", async () => {
  const { page, widget, close } = await visit();
  await widget.locator(".launcher").focus();
  await page.keyboard.press("Enter");
  await widget.getByRole("dialog").waitFor();
  assert.deepEqual(await focused(page), { tag: "textarea", cls: "", inDialog: true });
  const seen = new Set();
  for (let i = 0; i < 12; i++) {
    await page.keyboard.press("Tab");
    const f = await focused(page);
    assert.ok(f?.inDialog, `Tab ${i + 1} left the panel: ${JSON.stringify(f)}`);
    seen.add(`${f.tag}.${f.cls}`);
  }
  for (let i = 0; i < 12; i++) {
    await page.keyboard.press("Shift+Tab");
    assert.ok((await focused(page))?.inDialog, `Shift+Tab ${i + 1} left the panel`);
  }
  assert.ok(seen.size >= 3, `Tab went round the panel's controls: ${[...seen]}`);
  await page.keyboard.press("Escape");
  await widget.getByRole("dialog").waitFor({ state: "hidden" });
  const back = await focused(page);
  assert.equal(back?.cls, "launcher", "focus went back to the launcher");
  assert.equal(await widget.locator(".launcher").getAttribute("aria-expanded"), "false");
  await close();
});

test("Arabic is laid out right to left", async () => {
  const { page, widget, close } = await visit({ locale: "ar" });
  await page.evaluate(() => window.Fleety.push(["setLocale", "ar"]));
  await widget.locator(".launcher").click();
  const dialog = widget.getByRole("dialog");
  await dialog.waitFor();
  assert.equal(await dialog.getAttribute("dir"), "rtl");
  assert.equal(await dialog.getAttribute("lang"), "ar");
  const title = await widget.locator("#fleety-title").textContent();
  assert.match(title, /[\u0600-\u06FF]/, `an Arabic title: ${title}`);
  // The send button sits on the left of the input in a right-to-left layout.
  const input = await widget.locator("textarea").boundingBox();
  const send = await widget.locator("button.send").boundingBox();
  assert.ok(send.x < input.x, `send ${JSON.stringify(send)} left of input ${JSON.stringify(input)}`);
  await shot(page, "widget-rtl");
  await close();
});

test("the panel follows the visitor's dark mode", async () => {
  const { page, widget, close } = await visit({ colorScheme: "dark" });
  await widget.locator(".launcher").click();
  const dialog = widget.getByRole("dialog");
  await dialog.waitFor();
  const background = await dialog.evaluate((el) => getComputedStyle(el).backgroundColor);
  const [r, g, b] = background.match(/\d+/g).map(Number);
  assert.ok(r + g + b < 200, `a dark panel: ${background}`);
  await shot(page, "widget-dark");
  await close();
});

test("a rate limit is shown to the visitor, and sending is held until it ends", async () => {
  const { page, widget, close } = await visit();
  await widget.locator(".launcher").click();
  const input = widget.locator("textarea");
  for (const question of ["How long do refunds take?", "Where do refunds go back to?"]) {
    await input.fill(question);
    await input.press("Enter");
    await widget.locator(".message.assistant .bubble").last().filter({ hasText: /\w/ }).waitFor();
    await widget.locator(".typing").waitFor({ state: "hidden" });
  }
  await input.fill("Are refunds quick?");
  await input.press("Enter");
  const banner = widget.locator(".banner", { hasText: "Too many messages" });
  await banner.waitFor();
  assert.match(await banner.textContent(), /Try again in \d+ s/);
  assert.equal(await widget.locator("button.send").isDisabled(), true);
  await shot(page, "widget-rate-limited");
  await close();
});

// The first minute: the address the banner prints opens the demo site, where a newcomer chats
// with the widget at once, under the page's own Content-Security-Policy (no bypass here). With
// the demo off, `/` names the inbox and the API reference. Neither page shows an admin key.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { axe, browser, shot, startServer } from "./harness.mjs";

let chromium;

before(async () => {
  chromium = await browser();
});

after(async () => {
  await chromium?.close();
});

/** A page that records what the policy blocked and what failed, from before its first script. */
async function watchedPage() {
  const context = await chromium.newContext({ viewport: { width: 1200, height: 860 } });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      console.error(`CSP blocked ${e.blockedURI || "inline"} (${e.violatedDirective})`);
    });
  });
  return { page, problems, close: () => context.close() };
}

test("with the demo, / is a site whose widget answers at once, with the inbox and next steps", async () => {
  const server = await startServer();
  try {
    const key = readFileSync(join(server.dataDir, "demo-admin-key"), "utf8").trim();
    const { page, problems, close } = await watchedPage();
    const resp = await page.goto(`${server.base}/`);
    assert.equal(resp.status(), 200);
    assert.match(resp.headers()["content-security-policy"], /default-src 'self'/);
    const html = await page.content();
    assert.ok(!html.includes(key), "the admin key is on the page");
    for (const step of ["Embed the snippet", "Create a project", "Point the assistant at a model"]) {
      await page.getByRole("listitem").filter({ hasText: step }).waitFor();
    }
    assert.equal(await page.getByRole("link", { name: "Open the inbox" }).getAttribute("href"), "/inbox");

    const widget = page.locator("fleety-widget");
    await widget.locator(".launcher").click();
    const input = widget.locator("textarea");
    await input.fill("How do I reset my password?");
    await input.press("Enter");
    await widget.locator(".message.user", { hasText: "reset my password" }).waitFor();
    // The offline assistant answers from the demo's help center.
    const answer = widget.locator(".message.assistant .bubble").last();
    await answer.filter({ hasText: /password/i }).waitFor();
    await widget.locator(".typing").waitFor({ state: "hidden" });
    await shot(page, "demo-home");
    assert.deepEqual(problems, []);
    assert.deepEqual(await axe(page), []);

    await page.getByRole("link", { name: "Open the inbox" }).click();
    await page.waitForURL(`${server.base}/inbox`);
    await page.getByLabel("Project id").waitFor();
    await close();
  } finally {
    await server.stop();
  }
});

test("without the demo, / names the inbox and the API reference, and embeds nothing", async () => {
  const server = await startServer({ env: { FLEETY_DEMO: "false" } });
  try {
    const { page, problems, close } = await watchedPage();
    await page.goto(`${server.base}/`);
    await page.getByRole("heading", { name: "Fleety is running" }).waitFor();
    assert.equal(await page.getByRole("link", { name: "inbox" }).getAttribute("href"), "/inbox");
    assert.equal(await page.getByRole("link", { name: /openapi\.json/ }).getAttribute("href"), "/v1/openapi.json");
    assert.equal(await page.locator("script").count(), 0);
    assert.equal(await page.locator("fleety-widget").count(), 0);
    await shot(page, "home-without-demo");
    assert.deepEqual(problems, []);
    assert.deepEqual(await axe(page), []);
    await close();
  } finally {
    await server.stop();
  }
});

// The inbox's alerts while its tab is hidden: a notification and a sound for a new ticket and for
// a reply on a ticket assigned to the agent, not for a reply on anyone else's; each switchable;
// a notice when the browser blocks notifications; the sound switched off stays off after a reload. Chromium's permission is granted with
// Playwright; headless Chromium never hides a page, so the page's `document.visibilityState` is
// overridden, and the `Notification` constructor and the oscillator are wrapped to count what
// was shown and played.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { axe, browser, createProject, shot, startServer, until } from "./harness.mjs";

let server, project, chromium;

before(async () => {
  server = await startServer();
  project = await createProject(server.base, ["http://127.0.0.1:9"], "Alerts");
  chromium = await browser();
});

after(async () => {
  await chromium?.close();
  await server?.stop();
});

async function api(method, path, body, key = project.key) {
  const r = await fetch(`${server.base}${path}`, {
    method,
    headers: { "Content-Type": "application/json", ...(key ? { Authorization: `Bearer ${key}` } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

/** Runs in the page before its scripts: a switchable visibility, and counters. */
function instrument({ deny }) {
  let hidden = false;
  Object.defineProperty(Document.prototype, "visibilityState", { get: () => (hidden ? "hidden" : "visible"), configurable: true });
  Object.defineProperty(Document.prototype, "hidden", { get: () => hidden, configurable: true });
  window.__hide = (h) => {
    hidden = h;
    document.dispatchEvent(new Event("visibilitychange"));
  };
  window.__notes = [];
  const Real = window.Notification;
  class Counted extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notes.push({ title, body: options?.body });
    }
  }
  if (deny) Object.defineProperty(Counted, "permission", { get: () => "denied" });
  window.Notification = Counted;
  window.__sounds = 0;
  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (...args) {
    window.__sounds++;
    return start.apply(this, args);
  };
}

async function inbox(t, { grant, deny = false }) {
  const context = await chromium.newContext({ viewport: { width: 1280, height: 800 } });
  t.after(() => context.close());
  if (grant) await context.grantPermissions(["notifications"], { origin: server.base });
  await context.addInitScript(instrument, { deny });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("agent page error:", e.message));
  await page.goto(`${server.base}/inbox`);
  await page.getByLabel("Project id").fill(project.id);
  await page.getByLabel("Admin key").fill(project.key);
  await page.getByLabel("Your name").fill("Sam");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("status").filter({ hasText: "Live" }).waitFor();
  return page;
}

const notes = (page) => page.evaluate(() => window.__notes);

test("a hidden inbox notifies of new tickets and of replies on the agent's own tickets only", async (t) => {
  const page = await inbox(t, { grant: true });
  assert.equal(await page.evaluate(() => Notification.permission), "granted");
  const mine = await api("POST", `/v1/tickets/${project.id}`, { title: "Mine" });
  const theirs = await api("POST", `/v1/tickets/${project.id}`, { title: "Theirs" });
  await api("PATCH", `/v1/tickets/${project.id}/${mine.slug}`, { assignee: "Sam" });
  await api("PATCH", `/v1/tickets/${project.id}/${theirs.slug}`, { assignee: "Alex" });
  await page.locator(`[data-slug="${theirs.slug}"]`).waitFor();

  // Visible: nothing.
  await api("POST", `/v1/tickets/${project.id}/${mine.slug}/messages`, { content: "Seen on screen" }, null);
  await page.locator(`[data-slug="${mine.slug}"] .preview`, { hasText: "Seen on screen" }).waitFor();
  assert.deepEqual(await notes(page), []);

  await page.evaluate(() => window.__hide(true));
  await api("POST", `/v1/tickets/${project.id}`, { title: "Printer on fire" });
  await until("the new ticket's notification", async () => (await notes(page)).some((n) => n.title === "New ticket" && n.body === "Printer on fire"));
  await api("POST", `/v1/tickets/${project.id}/${theirs.slug}/messages`, { content: "For Alex" }, null);
  await api("POST", `/v1/tickets/${project.id}/${mine.slug}/messages`, { content: "For Sam" }, null);
  await until("the reply's notification", async () => (await notes(page)).some((n) => n.body === "For Sam"));
  const shown = await notes(page);
  assert.ok(!shown.some((n) => n.body === "For Alex"), "a reply on another agent's ticket notified");
  assert.match(shown.find((n) => n.body === "For Sam").title, /assigned to you/);
  assert.ok((await page.evaluate(() => window.__sounds)) >= 2, "no sound played");

  // Notifications switched off (kept in this browser): the sound alone.
  await page.getByRole("button", { name: /^Alerts/ }).click();
  await page.getByLabel("Show a notification").uncheck();
  const before = (await notes(page)).length;
  const sounds = await page.evaluate(() => window.__sounds);
  await api("POST", `/v1/tickets/${project.id}`, { title: "Quietly" });
  await until("the sound", async () => (await page.evaluate(() => window.__sounds)) > sounds);
  assert.equal((await notes(page)).length, before, "notified although switched off");
  assert.deepEqual(await page.evaluate(() => JSON.parse(localStorage.getItem("fleety:inbox-alerts"))), { sound: true, notify: false });
});

test("when the browser blocks notifications, the agent is told", async (t) => {
  const page = await inbox(t, { grant: false, deny: true });
  await page.getByRole("button", { name: "Alerts ⚠" }).click();
  await page.getByText("Your browser blocks notifications from this site").waitFor();
  await shot(page, "inbox-alerts-blocked");
  assert.deepEqual(await axe(page), []);
  await page.getByLabel("Show a notification").uncheck();
  assert.equal(await page.getByText("Your browser blocks notifications from this site").count(), 0, "the notice stays after switching off");
});

test("switching the sound off silences it, and the switch is kept across a reload", async (t) => {
  const page = await inbox(t, { grant: true });
  const sounds = () => page.evaluate(() => window.__sounds);
  await page.evaluate(() => window.__hide(true));
  await api("POST", `/v1/tickets/${project.id}`, { title: "Loud" });
  await until("the sound", async () => (await sounds()) > 0);

  await page.evaluate(() => window.__hide(false));
  await page.getByRole("button", { name: /^Alerts/ }).click();
  const sound = page.getByLabel("Play a sound");
  assert.ok(await sound.isChecked());
  await sound.uncheck();
  await shot(page, "inbox-alerts");
  assert.deepEqual(await axe(page), []);
  const played = await sounds();
  await page.evaluate(() => window.__hide(true));
  // The notification is shown right after the sound would have played, in the same call: once
  // it is there, a sound would have been counted.
  await api("POST", `/v1/tickets/${project.id}`, { title: "Silent" });
  await until("the notification", async () => (await notes(page)).some((n) => n.body === "Silent"));
  assert.equal(await sounds(), played, "a sound played although switched off");

  // After a reload the switch is still off, and still silences.
  await page.reload();
  await page.getByRole("status").filter({ hasText: "Live" }).waitFor();
  await page.getByRole("button", { name: /^Alerts/ }).click();
  assert.equal(await page.getByLabel("Play a sound").isChecked(), false);
  assert.ok(await page.getByLabel("Show a notification").isChecked());
  await page.evaluate(() => window.__hide(true));
  await api("POST", `/v1/tickets/${project.id}`, { title: "Still silent" });
  await until("the notification after the reload", async () => (await notes(page)).some((n) => n.body === "Still silent"));
  assert.equal(await sounds(), 0, "a sound played after the reload although switched off");

  // Switched back on, it plays again.
  await page.getByLabel("Play a sound").check();
  await api("POST", `/v1/tickets/${project.id}`, { title: "Loud again" });
  await until("the sound switched back on", async () => (await sounds()) > 0);
});

// A project whose tickets need the session that opened them (`ticket_access: session`, set in
// the inbox's settings): the widget still works end to end. The visitor asks for a person, talks
// with an agent live, and after its session is gone (a new session, as after a long absence)
// comes back to the same conversation with the ticket key the hand-off gave it. A stranger with
// the slug gets nothing. Screenshots go to target/e2e/.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { browser, callApi, createProject, shot, startHostPage, startServer } from "./harness.mjs";

let server, project, host, chromium;

before(async () => {
  server = await startServer({ env: { FLEETY_PUBLIC_RATE_LIMIT: "100" } });
  host = await startHostPage(server.base);
  project = await createProject(server.base, [host.origin], "Private tickets");
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

const admin = (method, path, body) => callApi(server.base, project.key, method, path, body);

test("in session mode the widget opens, follows and reopens its ticket, and a stranger gets 404", async (t) => {
  // The setting, from the inbox.
  const agent = await page(t, "agent", { viewport: { width: 1280, height: 900 } });
  await agent.goto(`${server.base}/inbox`);
  await agent.getByLabel("Project id").fill(project.id);
  await agent.getByLabel("Admin key").fill(project.key);
  await agent.getByRole("button", { name: "Sign in" }).click();
  await agent.getByRole("button", { name: "Settings" }).click();
  const select = agent.locator("#access-title ~ label select:not([disabled])");
  await select.waitFor();
  assert.equal(await select.inputValue(), "slug");
  await select.selectOption("session");
  await agent.getByText("Only the visitor who opened a ticket").waitFor();
  await agent.locator("#access-title").scrollIntoViewIfNeeded();
  await shot(agent, "ticket-access-settings");
  assert.equal((await admin("GET", `/v1/projects/${project.id}`)).ticket_access, "session");

  // The visitor asks for a person: the assistant opens the ticket and the widget follows it.
  const visitor = await page(t, "visitor", { viewport: { width: 1100, height: 760 } });
  await visitor.goto(host.origin);
  const widget = visitor.locator("fleety-widget");
  await widget.locator(".launcher").click();
  await widget.getByRole("button", { name: "Talk to a person" }).click();
  const notice = widget.locator(".notice").filter({ hasText: "is open" });
  await notice.waitFor();
  const slug = /Ticket (\S+) is open/.exec(await notice.textContent())[1];
  const kept = await visitor.evaluate((id) => JSON.parse(localStorage.getItem(`fleety:v1:${id}`)), project.id);
  assert.match(kept.keys?.[slug] ?? "", /^ftk_/, "the hand-off's ticket key is kept");

  // A stranger who has the slug gets what an unknown slug gets.
  const stranger = await fetch(`${server.base}/v1/tickets/${project.id}/${slug}`);
  assert.equal(stranger.status, 404);
  assert.deepEqual(await stranger.json(), { error: "ticket not found" });

  // The visitor writes; the agent answers; the answer arrives live on the visitor's socket.
  const input = widget.locator("textarea");
  await input.fill("My parcel never came");
  await input.press("Enter");
  await widget.locator(".message.user .bubble", { hasText: "My parcel never came" }).waitFor();
  await widget.locator(".meta", { hasText: /sending/i }).waitFor({ state: "hidden" });
  await admin("POST", `/v1/tickets/${project.id}/${slug}/messages`, { author: "admin", content: "Sending a new one today" });
  await widget.locator(".message.admin .bubble", { hasText: "Sending a new one today" }).waitFor();
  const authors = (await admin("GET", `/v1/tickets/${project.id}/${slug}`)).messages.map((m) => [m.author, m.content]);
  assert.ok(authors.some(([a, c]) => a === "user" && c === "My parcel never came"), JSON.stringify(authors));

  // The session is gone (as after a long absence): the widget starts a new one, which did not
  // open the ticket, and the key brings the conversation back, live.
  await visitor.evaluate((id) => {
    const saved = JSON.parse(localStorage.getItem(`fleety:v1:${id}`));
    delete saved.token;
    delete saved.expires;
    localStorage.setItem(`fleety:v1:${id}`, JSON.stringify(saved));
  }, project.id);
  await visitor.reload();
  await widget.locator(".launcher").click();
  await widget.locator(".message.admin .bubble", { hasText: "Sending a new one today" }).waitFor();
  await admin("POST", `/v1/tickets/${project.id}/${slug}/messages`, { author: "admin", content: "Tracking number follows" });
  await widget.locator(".message.admin .bubble", { hasText: "Tracking number follows" }).waitFor();
  await input.fill("Thanks!");
  await input.press("Enter");
  await widget.locator(".message.user .bubble", { hasText: "Thanks!" }).waitFor();
  await widget.locator(".meta", { hasText: /sending/i }).waitFor({ state: "hidden" });
  const after = (await admin("GET", `/v1/tickets/${project.id}/${slug}`)).messages.map((m) => m.content);
  assert.ok(after.includes("Thanks!"), JSON.stringify(after));
  await shot(visitor, "ticket-access-widget");
});

// Triage in the inbox with 200 tickets: each ticket's last message, its time, its unread count,
// the visitor's name or email and tags in the list; the keyboard shortcuts (j/k, Enter, e, ? and Esc), which never fire
// while the agent types. The tickets are made through the API before the inbox opens.
// Screenshots go to target/e2e/.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { axe, browser, callApi, createProject, shot, startServer } from "./harness.mjs";

const TICKETS = 200;

let server, project, chromium;
/** The tickets' slugs, oldest first: the list shows the last one first. */
const slugs = [];

const call = (method, path, body) => callApi(server.base, project.key, method, path, body);

before(async () => {
  // 0 turns the per-IP limit off: the setup makes 400 public requests in a few seconds.
  server = await startServer({ env: { FLEETY_PUBLIC_RATE_LIMIT: "0" } });
  project = await createProject(server.base, [], "Triage");
  chromium = await browser();
  // One at a time, so the list's order (newest first) is the order made.
  for (let i = 0; i < TICKETS; i++) {
    // A third of the visitors are known by name, a third by email only, a third not at all.
    const visitor = [{ name: `Customer ${i}`, email: `c${i}@example.com` }, { email: `c${i}@example.com` }, undefined][i % 3];
    const t = await call("POST", `/v1/tickets/${project.id}`, { title: `Order ${i} went missing`, description: "", visitor });
    slugs.push(t.slug);
    await call("POST", `/v1/tickets/${project.id}/${t.slug}/messages`, { author: "user", content: `Where is   order\n${i}?` });
    if (i % 10 === 0) await call("PATCH", `/v1/tickets/${project.id}/${t.slug}`, { tags: ["shipping"] });
  }
  // The newest ticket has two unread messages from the visitor, and an agent's reply after them.
  const newest = slugs[TICKETS - 1];
  await call("POST", `/v1/tickets/${project.id}/${newest}/messages`, { author: "user", content: "Hello? Anyone?" });
  await call("POST", `/v1/tickets/${project.id}/${newest}/messages`, { author: "admin", content: "On it, one moment." });
});

after(async () => {
  await chromium?.close();
  await server?.stop();
});

const title = (i) => `Order ${i} went missing`;

test("an agent triages 200 tickets from the keyboard", async (t) => {
  const context = await chromium.newContext({ viewport: { width: 1280, height: 800 } });
  t.after(() => context.close());
  const agent = await context.newPage();
  agent.on("pageerror", (e) => console.error("agent page error:", e.message));
  await agent.goto(`${server.base}/inbox`);
  await agent.getByLabel("Project id").fill(project.id);
  await agent.getByLabel("Admin key").fill(project.key);
  await agent.getByLabel("Your name").fill("Alex");
  await agent.getByRole("button", { name: "Sign in" }).click();
  await agent.getByRole("status").filter({ hasText: "Live" }).waitFor();

  // The list: last message (the agent's, marked as such), its time, unread count, tags.
  const row = (i) => agent.locator(".ticket", { hasText: title(i) });
  const newest = row(TICKETS - 1);
  await newest.waitFor();
  assert.equal((await newest.locator(".preview").textContent()).trim(), "You: On it, one moment.");
  assert.equal(await newest.locator(".unread").textContent(), "2");
  assert.match(await newest.locator("time").textContent(), /\d/);
  assert.equal((await row(TICKETS - 2).locator(".preview").textContent()).trim(), `Where is order ${TICKETS - 2}?`);
  assert.equal(await row(TICKETS - 2).locator(".unread").textContent(), "1");
  assert.equal(await row(TICKETS - 10).locator(".tag").textContent(), "shipping");
  // The visitor by name when known, else by email.
  assert.equal((await row(198).locator(".visitor").textContent()).trim(), "Customer 198");
  assert.equal((await row(199).locator(".visitor").textContent()).trim(), "c199@example.com");
  assert.equal(await row(197).locator(".visitor").count(), 0);
  await shot(agent, "inbox-list");
  assert.deepEqual(await axe(agent), []);

  const focused = () => agent.locator(".ticket.focused .title").textContent();
  // j moves down from the top, k back up.
  await agent.keyboard.press("j");
  assert.equal(await focused(), title(TICKETS - 1));
  await agent.keyboard.press("j");
  await agent.keyboard.press("j");
  assert.equal(await focused(), title(TICKETS - 3));
  await agent.keyboard.press("k");
  assert.equal(await focused(), title(TICKETS - 2));
  // The focused ticket is the keyboard's focus too, so screen readers follow it.
  assert.equal(await agent.evaluate(() => document.activeElement?.querySelector(".title")?.textContent), title(TICKETS - 2));

  // Enter opens it: its thread, and its unread count is gone.
  await agent.keyboard.press("Enter");
  await agent.locator(".detail h1", { hasText: title(TICKETS - 2) }).waitFor();
  await agent.locator(".thread .msg.user", { hasText: `order ${TICKETS - 2}?` }).waitFor();
  assert.equal(await row(TICKETS - 2).locator(".unread").count(), 0);

  // e resolves it, in the list and on the server.
  await agent.keyboard.press("e");
  await row(TICKETS - 2).locator(".status.resolved").waitFor();
  const listed = await call("GET", `/v1/projects/${project.id}/tickets?status=resolved`);
  assert.deepEqual(listed.tickets.map((x) => x.slug), [slugs[TICKETS - 2]]);

  // Typing in the search box or the reply box is typing, not shortcuts.
  await agent.getByLabel("Search tickets").fill("");
  await agent.getByLabel("Search tickets").pressSequentially("jke?");
  assert.equal(await agent.getByLabel("Search tickets").inputValue(), "jke?");
  assert.equal(await focused(), title(TICKETS - 2));
  assert.equal(await agent.getByRole("dialog").count(), 0);
  await agent.getByLabel("Search tickets").fill("");
  await agent.keyboard.press("Escape");
  await agent.getByLabel("Reply to the visitor").pressSequentially("e j k ?");
  assert.equal(await agent.getByLabel("Reply to the visitor").inputValue(), "e j k ?");
  assert.equal(await focused(), title(TICKETS - 2));
  assert.equal(await agent.getByRole("dialog").count(), 0);

  // ? shows the help, Esc closes it; j and k then carry on from the same ticket.
  await agent.getByLabel("Reply to the visitor").fill("");
  await agent.evaluate(() => document.activeElement instanceof HTMLElement && document.activeElement.blur());
  await agent.keyboard.press("?");
  const help = agent.getByRole("dialog", { name: "Keyboard shortcuts" });
  await help.waitFor();
  for (const key of ["j", "k", "Enter", "e", "?", "Esc"]) await help.locator("kbd", { hasText: new RegExp(`^${key.replace("?", "\\?")}$`) }).waitFor();
  await shot(agent, "inbox-shortcuts");
  assert.deepEqual(await axe(agent), []);
  // Keys pressed with the help open move nothing.
  await agent.keyboard.press("j");
  await agent.keyboard.press("Escape");
  await help.waitFor({ state: "detached" });
  assert.equal(await focused(), title(TICKETS - 2));
  await agent.keyboard.press("j");
  assert.equal(await focused(), title(TICKETS - 3));
  // Enter with the focus on the page, not on the ticket's button, opens the focused ticket too.
  await agent.evaluate(() => document.activeElement instanceof HTMLElement && document.activeElement.blur());
  await agent.keyboard.press("Enter");
  await agent.locator(".detail h1", { hasText: title(TICKETS - 3) }).waitFor();
  // Only the one ticket was resolved along the way.
  const after = await call("GET", `/v1/projects/${project.id}/tickets?status=resolved`);
  assert.equal(after.tickets.length, 1);
  await shot(agent, "inbox-thread");
  // A ticket the assistant opens while the agent watches arrives with its chat: the list shows
  // the chat's last message and counts the visitor's messages in it.
  const session = await fetch(`${server.base}/v1/init-session`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ project_id: project.id }),
  }).then((r) => r.json());
  const handoff = await fetch(`${server.base}/v1/chat/tools`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${session.token}` },
    body: JSON.stringify({
      messages: [
        { role: "user", content: "My parcel never came." },
        { role: "assistant", content: "Sorry to hear that." },
        { role: "user", content: "I'd like to talk to a person, please." },
      ],
      enable_tool_calling: true,
    }),
  }).then((r) => r.json());
  const live = agent.locator(".ticket", { hasText: handoff.ticket_slug });
  await live.locator(".preview", { hasText: "I'd like to talk to a person, please." }).waitFor();
  // The visitor's two messages, and the assistant's answer the widget reported, which the
  // ticket keeps as the visitor's (marked as such).
  assert.equal(await live.locator(".unread").textContent(), "3");
  await shot(agent, "inbox-list-live");
});

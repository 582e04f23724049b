// A project's owner signs in to the inbox with an email and password, sees their name, adds an
// agent on the members page; the agent signs in in a browser of their own, sees no settings
// nor members, and is signed out for good once the owner deactivates them: their open inbox
// goes back to the sign-in page at once. On their account page the owner makes a
// personal API token, sees its secret once, uses it, and revokes it.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { addMember, axe, browser, createProject, PASSWORD, shot, signIn, startServer } from "./harness.mjs";

let server, project, chromium, owner;

before(async () => {
  server = await startServer();
  project = await createProject(server.base, ["http://127.0.0.1:9"], "Team");
  await addMember(server.base, project.id, { email: "olga@example.com", name: "Olga", role: "owner" });
  chromium = await browser();
  const context = await chromium.newContext({ viewport: { width: 1280, height: 800 } });
  owner = await context.newPage();
  owner.on("pageerror", (e) => console.error("owner page error:", e.message));
});

after(async () => {
  await chromium?.close();
  await server?.stop();
});

test("a wrong password is refused, the right one signs the owner in under their name", async () => {
  await signIn(owner, server.base, project.id, "olga@example.com", { password: "not the password", live: false });
  await owner.getByRole("alert").filter({ hasText: "do not match" }).waitFor();
  await owner.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await owner.getByRole("button", { name: "Sign in" }).click();
  await owner.getByRole("status").filter({ hasText: "Live" }).waitFor();
  assert.match(await owner.locator(".bar .who").textContent(), /Olga.*owner/);
  // The session is a cookie the page cannot read.
  const cookies = await owner.context().cookies();
  const session = cookies.find((c) => c.name === "fleety_member");
  assert.ok(session?.httpOnly && session.sameSite === "Strict");
  assert.equal(await owner.evaluate(() => document.cookie), "");
});

test("the owner adds an agent on the members page", async () => {
  await owner.getByRole("button", { name: "Members" }).click();
  await owner.getByLabel("Email", { exact: true }).fill("eli@example.com");
  await owner.getByLabel("Name", { exact: true }).fill("Eli");
  await owner.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await owner.getByLabel("Role", { exact: true }).selectOption("agent");
  await owner.getByRole("button", { name: "Add member" }).click();
  await owner.getByRole("status").filter({ hasText: "Eli can sign in" }).waitFor();
  const row = owner.locator("table.members tr", { hasText: "eli@example.com" });
  await row.waitFor();
  assert.match(await row.textContent(), /Eli.*agent.*invited/);
  await shot(owner, "members-page");
  assert.deepEqual(await axe(owner), []);
});

test("the agent signs in elsewhere, sees tickets but no settings, and deactivation ends it", async () => {
  const context = await chromium.newContext({ viewport: { width: 1280, height: 800 } });
  const agent = await context.newPage();
  agent.on("pageerror", (e) => console.error("agent page error:", e.message));
  await signIn(agent, server.base, project.id, "eli@example.com");
  assert.match(await agent.locator(".bar .who").textContent(), /Eli.*agent/);
  const views = await agent.getByRole("navigation", { name: "Views" }).getByRole("button").allTextContents();
  assert.deepEqual(views, ["Tickets", "Knowledge base", "Account"]);
  // The knowledge base is theirs to read, not to write.
  await agent.getByRole("button", { name: "Knowledge base" }).click();
  await agent.getByText("Read only: owners and admins edit the knowledge base.").waitFor();
  assert.equal(await agent.getByRole("button", { name: "New article" }).count(), 0);
  await agent.getByRole("button", { name: /^Tickets/ }).click();

  await owner.reload();
  await owner.getByRole("button", { name: "Members" }).click();
  const row = owner.locator("table.members tr", { hasText: "eli@example.com" });
  assert.match(await row.textContent(), /active/);
  await owner.getByRole("button", { name: "Deactivate Eli" }).click();
  await owner.locator("table.members tr", { hasText: "deactivated" }).waitFor();
  // The agent's cookie no longer opens anything.
  const status = await agent.evaluate(async (id) => (await fetch(`/v1/projects/${id}/me`)).status, project.id);
  assert.equal(status, 401);
  // The agent's open inbox is told at once, and goes back to the sign-in page with a notice.
  await agent.getByRole("status").filter({ hasText: "You were signed out" }).waitFor();
  await agent.getByRole("button", { name: "Use the project's admin key instead" }).waitFor();
  await context.close();
});

test("the owner makes a personal API token on the account page, sees it once, and revokes it", async () => {
  await owner.getByRole("button", { name: "Account" }).click();
  await owner.getByText("No tokens yet.").waitFor();
  await owner.getByLabel("Name", { exact: true }).fill("CRM sync");
  await owner.getByLabel("Scope", { exact: true }).selectOption("read");
  await owner.getByRole("button", { name: "Make token" }).click();
  const shown = owner.getByLabel("New token");
  await shown.waitFor();
  const secret = await shown.inputValue();
  assert.match(secret, /^fpt_[0-9a-f]{32}_[A-Za-z0-9_-]{43}$/);
  const row = owner.locator("table.members tr", { hasText: "CRM sync" });
  await row.waitFor();
  assert.match(await row.textContent(), /CRM sync.*read.*never/);
  await shot(owner, "account-tokens");
  assert.deepEqual(await axe(owner), []);
  // The token reads as the owner, and may not write.
  const me = await fetch(`${server.base}/v1/projects/${project.id}/me`, { headers: { Authorization: `Bearer ${secret}` } });
  assert.equal(me.status, 200);
  assert.equal((await me.json()).member.email, "olga@example.com");
  const write = await fetch(`${server.base}/v1/projects/${project.id}`, {
    method: "PATCH",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${secret}` },
    body: JSON.stringify({ name: "Taken" }),
  });
  assert.equal(write.status, 403);
  // Once dismissed, the secret is nowhere on the page, and the list never had it.
  await owner.getByRole("button", { name: "Done, I copied it" }).click();
  await owner.reload();
  await owner.getByRole("button", { name: "Account" }).click();
  await row.waitFor();
  assert.ok(!(await owner.content()).includes(secret));
  await owner.getByRole("button", { name: "Revoke CRM sync" }).click();
  await owner.getByText("No tokens yet.").waitFor();
  const revoked = await fetch(`${server.base}/v1/projects/${project.id}/me`, { headers: { Authorization: `Bearer ${secret}` } });
  assert.equal(revoked.status, 401);
});

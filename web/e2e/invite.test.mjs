// The owner invites an agent from the members page and copies the link; the agent opens it in a
// browser of their own, chooses a name and password, is signed in and answers a visitor, whose
// widget names them. The owner deactivates the agent: the agent's open inbox goes to the
// sign-in page at once, with a notice, without waiting for its next call; and the settings
// stay out of the agent's reach throughout. Screenshots go to target/e2e/; the members page's
// is docs/images/members.png.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { axe, browser, createProject, shot, startHostPage, startServer } from "./harness.mjs";

const OPERATOR = "e2e-operator-token-0123456789";
const PASSWORD = "correct horse battery";

let server, project, host, chromium;

before(async () => {
  server = await startServer({ env: { FLEETY_PUBLIC_RATE_LIMIT: "100" } });
  host = await startHostPage(server.base);
  project = await createProject(server.base, [host.origin], "Invited");
  host.project = project.id;
  const r = await fetch(`${server.base}/v1/admin/projects/${project.id}/members`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${OPERATOR}` },
    body: JSON.stringify({ email: "olga@example.com", name: "Olga", password: PASSWORD, role: "owner" }),
  });
  assert.equal(r.status, 201);
  chromium = await browser();
});

after(async () => {
  await chromium?.close();
  await host?.close();
  await server?.stop();
});

test("an invited agent joins by link, answers a visitor, and is signed out at once when deactivated", async (t) => {
  // The visitor asks for a person first, so a ticket waits for the agent.
  const visitorContext = await chromium.newContext({ viewport: { width: 1100, height: 900 } });
  t.after(() => visitorContext.close());
  const visitor = await visitorContext.newPage();
  visitor.on("pageerror", (e) => console.error("visitor page error:", e.message));
  await visitor.goto(host.origin);
  const widget = visitor.locator("fleety-widget");
  await widget.locator(".launcher").click();
  await widget.getByRole("button", { name: "Talk to a person" }).click();
  await widget.locator(".notice").filter({ hasText: "is open" }).last().waitFor();
  await widget.locator("textarea").fill("Can someone help with my order?");
  await widget.locator("textarea").press("Enter");

  // The owner invites Eli and copies the link.
  const ownerContext = await chromium.newContext({ viewport: { width: 1280, height: 900 } });
  t.after(() => ownerContext.close());
  const owner = await ownerContext.newPage();
  owner.on("pageerror", (e) => console.error("owner page error:", e.message));
  await owner.goto(`${server.base}/inbox`);
  await owner.getByRole("button", { name: "Use your email and password instead" }).click();
  await owner.getByLabel("Project id").fill(project.id);
  await owner.getByLabel("Email", { exact: true }).fill("olga@example.com");
  await owner.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await owner.getByRole("button", { name: "Sign in" }).click();
  await owner.getByRole("status").filter({ hasText: "Live" }).waitFor();
  await owner.getByRole("button", { name: "Members" }).click();
  await owner.getByLabel("Email to invite").fill("eli@example.com");
  await owner.getByLabel("Role to give").selectOption("agent");
  await owner.getByRole("button", { name: "Invite", exact: true }).click();
  const link = await owner.getByLabel("Invitation link for eli@example.com").inputValue();
  assert.match(link, new RegExp(`^${server.base}/inbox#/accept\\?project=${project.id}&token=fmi_`));
  const pending = owner.locator("table.members tr", { hasText: "eli@example.com" });
  await pending.waitFor();
  assert.match(await pending.textContent(), /eli@example\.com.*agent/);

  // Eli accepts in a browser of their own and is signed in.
  const agentContext = await chromium.newContext({ viewport: { width: 1280, height: 800 } });
  t.after(() => agentContext.close());
  const agent = await agentContext.newPage();
  agent.on("pageerror", (e) => console.error("agent page error:", e.message));
  await agent.goto(link);
  await agent.getByRole("heading", { name: `Join ${project.id}` }).waitFor();
  await shot(agent, "invite-accept");
  assert.deepEqual(await axe(agent), []);
  await agent.getByLabel("Your name").fill("Eli Vance");
  await agent.getByLabel("Password", { exact: true }).fill("short");
  await agent.getByRole("button", { name: "Join and sign in" }).click();
  // The browser's own check refuses it before the server sees it; a strong one goes through.
  await agent.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await agent.getByRole("button", { name: "Join and sign in" }).click();
  await agent.getByRole("status").filter({ hasText: "Live" }).waitFor();
  assert.match(await agent.locator(".bar .who").textContent(), /Eli Vance.*agent/);
  // The token left the address bar once used.
  assert.equal(new URL(agent.url()).hash, "");
  // No settings, members or webhooks for an agent: not in the inbox, not in the API.
  const views = await agent.getByRole("navigation", { name: "Views" }).getByRole("button").allTextContents();
  assert.deepEqual(views, ["Tickets", "Knowledge base", "Account"]);
  const settings = await agent.evaluate(async (id) => {
    const paths = [`/v1/projects/${id}/webhooks`, `/v1/projects/${id}/members`, `/v1/projects/${id}/invitations`];
    return Promise.all(paths.map(async (p) => (await fetch(p)).status));
  }, project.id);
  assert.deepEqual(settings, [403, 403, 403]);

  // Eli answers the visitor, whose widget names them.
  await agent.locator(".ticket", { hasText: "Can someone help with my order?" }).click();
  await agent.getByLabel("Reply to the visitor").fill("Eli here, let me look at your order.");
  await agent.getByRole("button", { name: "Send reply" }).click();
  await agent.locator(".thread .msg.admin", { hasText: "Eli here" }).waitFor();
  const answer = widget.locator(".message.admin", { hasText: "Eli here" });
  await answer.waitFor();
  assert.equal((await answer.locator(".who").textContent()).trim(), "Eli Vance");
  await shot(visitor, "invite-widget-agent-name");

  // The owner sees Eli active, then deactivates them.
  await owner.getByRole("button", { name: "Members" }).click();
  await owner.reload();
  await owner.getByRole("button", { name: "Members" }).click();
  const row = owner.locator("table.members tr", { hasText: "eli@example.com" });
  await row.filter({ hasText: "active" }).waitFor();
  assert.equal(await owner.locator("table.members caption", { hasText: "Pending invitations" }).count(), 0);
  const members = await shot(owner, "members");
  assert.deepEqual(await axe(owner), []);
  await owner.getByRole("button", { name: "Deactivate Eli Vance" }).click();
  await owner.locator("table.members tr", { hasText: "deactivated" }).waitFor();

  // The agent's open inbox is signed out without the agent doing anything.
  await agent.getByRole("status").filter({ hasText: "You were signed out" }).waitFor();
  await agent.getByRole("button", { name: "Sign in" }).waitFor();
  await shot(agent, "invite-signed-out");
  // And the cookie opens nothing now, settings least of all.
  const status = await agent.evaluate(async (id) => (await fetch(`/v1/projects/${id}/me`)).status, project.id);
  assert.equal(status, 401);
  // The link was used: it does not work again.
  await agent.goto(link);
  await agent.getByLabel("Your name").fill("Someone Else");
  await agent.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await agent.getByRole("button", { name: "Join and sign in" }).click();
  await agent.getByRole("alert").filter({ hasText: "used or revoked" }).waitFor();
  console.log(`members page: ${members}`);
});

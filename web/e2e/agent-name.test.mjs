// An agent signed in with their own account answers a visitor from the inbox: the visitor's
// widget names them (with their avatar) instead of "Support team", and the inbox names them
// on their reply. A reply with the project's admin key still reads "Support team". The
// screenshot goes to target/e2e/.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { browser, createProject, shot, startHostPage, startServer } from "./harness.mjs";

const PASSWORD = "correct horse battery";
const AVATAR = "https://avatars.example.com/eli.png";
// A 1x1 PNG, so the avatar loads without the network.
const PIXEL = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=",
  "base64",
);

let server, project, host, chromium;

before(async () => {
  server = await startServer({ env: { FLEETY_PUBLIC_RATE_LIMIT: "100" } });
  host = await startHostPage(server.base);
  project = await createProject(server.base, [host.origin], "Named");
  host.project = project.id;
  const r = await fetch(`${server.base}/v1/projects/${project.id}/members`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${project.key}` },
    body: JSON.stringify({ email: "eli@example.com", name: "Eli", password: PASSWORD, role: "agent", avatar_url: AVATAR }),
  });
  assert.equal(r.status, 201);
  chromium = await browser();
});

after(async () => {
  await chromium?.close();
  await host?.close();
  await server?.stop();
});

test("the widget and the inbox name the member who answered, and the admin key stays the team", async (t) => {
  const visitorContext = await chromium.newContext({ viewport: { width: 1100, height: 900 } });
  t.after(() => visitorContext.close());
  await visitorContext.route(/avatars\.example\.com/, (route) => route.fulfill({ status: 200, contentType: "image/png", body: PIXEL }));
  const visitor = await visitorContext.newPage();
  visitor.on("pageerror", (e) => console.error("visitor page error:", e.message));
  await visitor.goto(host.origin);
  const widget = visitor.locator("fleety-widget");
  await widget.locator(".launcher").click();
  await widget.getByRole("button", { name: "Talk to a person" }).click();
  await widget.locator(".notice").filter({ hasText: "is open" }).last().waitFor();
  await widget.locator("textarea").fill("Is anyone there?");
  await widget.locator("textarea").press("Enter");

  const agentContext = await chromium.newContext({ viewport: { width: 1280, height: 800 } });
  t.after(() => agentContext.close());
  const agent = await agentContext.newPage();
  agent.on("pageerror", (e) => console.error("agent page error:", e.message));
  await agent.goto(`${server.base}/inbox`);
  await agent.getByRole("button", { name: "Use your email and password instead" }).click();
  await agent.getByLabel("Project id").fill(project.id);
  await agent.getByLabel("Email", { exact: true }).fill("eli@example.com");
  await agent.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await agent.getByRole("button", { name: "Sign in" }).click();
  await agent.locator(".ticket", { hasText: "Is anyone there?" }).click();
  await agent.getByLabel("Reply to the visitor").fill("Eli here, happy to help.");
  await agent.getByRole("button", { name: "Send reply" }).click();
  const mine = agent.locator(".thread .msg.admin", { hasText: "Eli here" });
  await mine.waitFor();
  assert.match(await mine.locator(".who").textContent(), /^Eli · /);

  const answer = widget.locator(".message.admin", { hasText: "Eli here" });
  await answer.waitFor();
  assert.equal((await answer.locator(".who").textContent()).trim(), "Eli");
  const avatar = answer.locator(".who img.avatar");
  assert.equal(await avatar.getAttribute("src"), AVATAR);
  assert.equal(await avatar.getAttribute("alt"), "");
  await avatar.evaluate((img) => (img.complete ? null : new Promise((done) => (img.onload = done))));
  assert.equal(await avatar.evaluate((img) => img.naturalWidth), 1);

  // The admin key speaks for the project, not a member.
  const slug = /Ticket (\S+) is open/.exec(await widget.locator(".notice").filter({ hasText: "is open" }).last().textContent())[1];
  const reply = await fetch(`${server.base}/v1/tickets/${project.id}/${slug}/messages`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${project.key}` },
    body: JSON.stringify({ author: "admin", content: "From the team key." }),
  });
  assert.equal(reply.status, 201);
  const team = widget.locator(".message.admin", { hasText: "From the team key." });
  await team.waitFor();
  assert.equal((await team.locator(".who").textContent()).trim(), "Support team");
  assert.equal(await team.locator("img").count(), 0);
  // And a reload, which reads the ticket back rather than the live event, names Eli still.
  await visitor.reload();
  await widget.locator(".launcher").click();
  const again = widget.locator(".message.admin", { hasText: "Eli here" });
  await again.waitFor();
  assert.equal((await again.locator(".who").textContent()).trim(), "Eli");
  await again.scrollIntoViewIfNeeded();
  await shot(visitor, "widget-agent-name");
});

// Searching the inbox: the search box asks the server as the agent types (once they pause), and
// finds tickets by the words of their messages, not only their titles; while a search is shown, a
// message that makes another ticket match brings it into the list. Screenshots go to target/e2e/.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { browser, callApi, createProject, shot, startServer } from "./harness.mjs";

let server, project, chromium;
const slugs = {};

const call = (method, path, body) => callApi(server.base, project.key, method, path, body);

before(async () => {
  server = await startServer();
  project = await createProject(server.base, [], "Search");
  chromium = await browser();
  const made = [
    ["Parcel", "My parcel was delivered to the neighbour"],
    ["Question about billing", "The invoice shows the wrong VAT number"],
    ["Login", "The password reset mail never came"],
  ];
  for (const [title, message] of made) {
    const t = await call("POST", `/v1/tickets/${project.id}`, { title, description: "" });
    await call("POST", `/v1/tickets/${project.id}/${t.slug}/messages`, { author: "user", content: message });
    slugs[title] = t.slug;
  }
});

after(async () => {
  await chromium?.close();
  await server?.stop();
});

test("an agent finds tickets by what was written on them, as they type", async (t) => {
  const context = await chromium.newContext({ viewport: { width: 1280, height: 800 } });
  t.after(() => context.close());
  const agent = await context.newPage();
  agent.on("pageerror", (e) => console.error("agent page error:", e.message));
  const searches = [];
  agent.on("request", (r) => {
    const q = new URL(r.url()).searchParams.get("q");
    if (r.url().includes("/tickets?") && q) searches.push(q);
  });
  await agent.goto(`${server.base}/inbox`);
  await agent.getByLabel("Project id").fill(project.id);
  await agent.getByLabel("Admin key").fill(project.key);
  await agent.getByLabel("Your name").fill("Alex");
  await agent.getByRole("button", { name: "Sign in" }).click();
  await agent.getByRole("status").filter({ hasText: "Live" }).waitFor();
  const titles = () => agent.locator(".list .ticket .title").allTextContents();
  await agent.locator(".ticket", { hasText: "Parcel" }).waitFor();

  // A word only in a message; no Enter. Typed key by key, it is asked for once the agent pauses.
  await agent.getByLabel("Search tickets").pressSequentially("invoi", { delay: 30 });
  await agent.locator(".ticket", { hasText: "Parcel" }).waitFor({ state: "detached" });
  assert.deepEqual(await titles(), ["Question about billing"]);
  assert.deepEqual(searches, ["invoi"], "one request for the whole word, not one per key");
  await shot(agent, "search-by-message");

  // Another ticket's visitor writes the word: the search is asked again and it appears.
  await call("POST", `/v1/tickets/${project.id}/${slugs.Login}/messages`, { author: "user", content: "Also: no invoice either" });
  await agent.locator(".ticket", { hasText: "Login" }).waitFor();
  assert.deepEqual(await titles(), ["Login", "Question about billing"]);
  await shot(agent, "search-updated-live");

  // Clearing the box shows every ticket again.
  await agent.getByLabel("Search tickets").fill("");
  await agent.locator(".ticket", { hasText: "Parcel" }).waitFor();
  assert.equal((await titles()).length, 3);
});

// Messages carry a small, safe subset of Markdown, drawn the same way in the widget and in the
// inbox: bold, italics, inline code, lists and links (http, https and mailto only, opening in a
// new tab without access to the opener). Markup and script in a message stay text. Screenshots
// go to target/e2e/.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { browser, createProject, shot, startHostPage, startServer } from "./harness.mjs";

let server, project, host, chromium;

before(async () => {
  server = await startServer({ env: { FLEETY_PUBLIC_RATE_LIMIT: "100" } });
  host = await startHostPage(server.base);
  project = await createProject(server.base, [host.origin], "Markdown");
  host.project = project.id;
  chromium = await browser();
});

after(async () => {
  await chromium?.close();
  await host?.close();
  await server?.stop();
});

/** A message with each piece of the subset, and each way to sneak in markup or script. */
const message = (who) =>
  [
    `**${who}** writes _slowly_ and *gently*, with \`code <b>bold?</b>\` and snake_case_names.`,
    "- see [the docs](https://example.com/docs?a=1&b=2)",
    "- or mail [us](mailto:help@example.com)",
    "1. then https://example.com/status.",
    `<img src=x onerror="window.pwned='${who}-img'"> <script>window.pwned='${who}-script'</script>`,
    `[click](javascript:window.pwned='${who}-link') [data](data:text/html,hi) <a href="https://evil.example">raw</a>`,
  ].join("\n");

/** Checks one rendered message (`body`: the element holding its content) in `page`. */
async function checkRendered(page, body, who) {
  assert.equal(await body.locator("strong").first().textContent(), who);
  assert.deepEqual(await body.locator("em").allTextContents(), ["slowly", "gently"]);
  assert.equal(await body.locator("code").textContent(), "code <b>bold?</b>");
  assert.match(await body.textContent(), /snake_case_names/);
  assert.deepEqual(await body.locator("ul > li").count(), 2);
  assert.deepEqual(await body.locator("ol > li").count(), 1);
  const links = await body.locator("a").evaluateAll((as) =>
    as.map((a) => ({ href: a.getAttribute("href"), text: a.textContent, target: a.target, rel: a.rel })),
  );
  const safe = { target: "_blank", rel: "noopener noreferrer" };
  assert.deepEqual(links, [
    { href: "https://example.com/docs?a=1&b=2", text: "the docs", ...safe },
    { href: "mailto:help@example.com", text: "us", ...safe },
    { href: "https://example.com/status", text: "https://example.com/status", ...safe },
    // The raw anchor stays text; the address inside it is a bare address, linked as it reads.
    { href: "https://evil.example/", text: "https://evil.example", ...safe },
  ]);
  // Markup, script and unsafe links are shown as the sender wrote them, and nothing ran.
  const text = await body.textContent();
  for (const raw of ["<img src=x onerror=", "<script>", `[click](javascript:window.pwned='${who}-link')`, "[data](data:text/html,hi)", '<a href="https://evil.example">raw</a>']) {
    assert.ok(text.includes(raw), `${raw} is shown as text in ${text}`);
  }
  assert.equal(await body.locator("img, script, [onerror]").count(), 0);
  assert.equal(await page.evaluate(() => window.pwned), undefined);
  // A link click opens a new tab, never the page itself.
  const [tab] = await Promise.all([page.context().waitForEvent("page"), body.locator("a", { hasText: "the docs" }).click()]);
  assert.equal(await tab.evaluate(() => window.opener), null);
  await tab.close();
}

test("Markdown renders safely in the widget and in the inbox, from both sides", async (t) => {
  const context = await chromium.newContext({ viewport: { width: 1100, height: 900 } });
  t.after(() => context.close());
  // The example.com links open tabs: answer them here rather than on the network.
  await context.route(/example\.com/, (route) => route.fulfill({ status: 200, contentType: "text/html", body: "<title>docs</title>" }));
  const visitor = await context.newPage();
  visitor.on("pageerror", (e) => console.error("visitor page error:", e.message));
  await visitor.goto(host.origin);
  const widget = visitor.locator("fleety-widget");
  await widget.locator(".launcher").click();
  await widget.getByRole("button", { name: "Talk to a person" }).click();
  const notice = widget.locator(".notice").filter({ hasText: "is open" }).last();
  await notice.waitFor();
  const slug = /Ticket (\S+) is open/.exec(await notice.textContent())[1];

  // The visitor writes through the composer; the agent through the API.
  await widget.locator("textarea").fill(message("Visitor"));
  await widget.locator("textarea").press("Enter");
  const reply = await fetch(`${server.base}/v1/tickets/${project.id}/${slug}/messages`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${project.key}` },
    body: JSON.stringify({ author: "admin", content: message("Agent") }),
  });
  assert.equal(reply.status, 201);

  const mine = widget.locator(".message.user .bubble").filter({ hasText: "snake_case_names" });
  const theirs = widget.locator(".message.admin .bubble").filter({ hasText: "snake_case_names" });
  await mine.waitFor();
  await theirs.waitFor();
  await checkRendered(visitor, mine, "Visitor");
  await checkRendered(visitor, theirs, "Agent");
  await theirs.scrollIntoViewIfNeeded();
  await shot(visitor, "widget-markdown");

  const agent = await context.newPage();
  agent.on("pageerror", (e) => console.error("agent page error:", e.message));
  await agent.goto(`${server.base}/inbox`);
  await agent.getByLabel("Project id").fill(project.id);
  await agent.getByLabel("Admin key").fill(project.key);
  await agent.getByLabel("Your name").fill("Alex");
  await agent.getByRole("button", { name: "Sign in" }).click();
  await agent.locator(".ticket", { hasText: "snake_case_names" }).click();
  const visitorSaid = agent.locator(".thread .msg.user .body").filter({ hasText: "snake_case_names" });
  const agentSaid = agent.locator(".thread .msg.admin .body").filter({ hasText: "snake_case_names" });
  await visitorSaid.waitFor();
  await agentSaid.waitFor();
  await checkRendered(agent, visitorSaid, "Visitor");
  await checkRendered(agent, agentSaid, "Agent");
  await shot(agent, "inbox-markdown");
});

// The built-in offline assistant in the widget, seen from both sides: a question the help center
// cannot answer gets the offer of a person, a "yes" opens a ticket, and the agent finds it in the
// inbox titled by the question with the assistant's note giving the reason (and the chat shown
// once, as the ticket's messages, never copied into the note); an answer it can give
// cites its article with a safe link. Screenshots go to target/e2e/.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { browser, createProject, shot, startHostPage, startServer } from "./harness.mjs";

const OFFER = "Shall I pass this to the team?";
const LINK = "https://help.example.com/articles/refunds";

let server, project, host, chromium;

before(async () => {
  server = await startServer({ env: { FLEETY_PUBLIC_RATE_LIMIT: "100" } });
  host = await startHostPage(server.base);
  project = await createProject(server.base, [host.origin], "Assistant");
  host.project = project.id;
  // The help center's refunds article is published on the help site.
  const headers = { "Content-Type": "application/json", Authorization: `Bearer ${project.key}` };
  const list = await (await fetch(`${server.base}/v1/projects/${project.id}/kb/articles`, { headers })).json();
  const refunds = list.articles.find((a) => a.title === "Refunds");
  const patched = await fetch(`${server.base}/v1/projects/${project.id}/kb/articles/${refunds.id}`, {
    method: "PATCH",
    headers,
    body: JSON.stringify({ url: LINK }),
  });
  assert.equal(patched.status, 200);
  chromium = await browser();
});

after(async () => {
  await chromium?.close();
  await host?.close();
  await server?.stop();
});

/** A page in a browser context of its own, closed when test `t` ends. */
async function page(t, who, options) {
  const context = await chromium.newContext(options);
  t.after(() => context.close());
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`${who} page error:`, e.message));
  return page;
}

async function openWidget(t) {
  const visitor = await page(t, "visitor", { viewport: { width: 1100, height: 760 } });
  await visitor.goto(host.origin);
  const widget = visitor.locator("fleety-widget");
  await widget.locator(".launcher").click();
  await widget.locator("textarea").waitFor();
  return { page: visitor, widget };
}

/** Asks `question` and waits for the whole answer; the answer's bubble. (Counted among the
 * conversation's own messages, `[data-id]`: the greeting an empty chat shows goes once it starts.) */
async function ask(widget, question) {
  const before = await widget.locator(".message.assistant[data-id]").count();
  const input = widget.locator("textarea");
  await input.fill(question);
  await input.press("Enter");
  await widget.locator(".message.user", { hasText: question }).waitFor();
  const answer = widget.locator(".message.assistant[data-id]").nth(before);
  await answer.locator(".bubble").filter({ hasText: /\w/ }).waitFor();
  await widget.locator(".typing").waitFor({ state: "hidden" });
  return answer;
}

test("an unanswerable question gets the offer, a yes opens a ticket the inbox shows with its title and note", async (t) => {
  const { page: visitor, widget } = await openWidget(t);
  const question = "Can I export my dashboards to PDF?";
  const answer = await ask(widget, question);
  const said = await answer.locator(".bubble").textContent();
  assert.ok(said.includes("couldn't find an answer") && said.endsWith(OFFER), said);
  assert.equal(await answer.locator(".sources").count(), 0, "no article is quoted");
  assert.equal(await widget.locator(".notice").count(), 0, "an offer is not a ticket");

  await widget.locator("textarea").fill("yes");
  await widget.locator("textarea").press("Enter");
  const notice = widget.locator(".notice").filter({ hasText: "is open" });
  await notice.waitFor();
  const slug = /Ticket (\S+) is open/.exec(await notice.textContent())[1];
  await shot(visitor, "assistant-offer-accepted");

  const agent = await page(t, "agent", { viewport: { width: 1280, height: 800 } });
  await agent.goto(`${server.base}/inbox`);
  await agent.getByLabel("Project id").fill(project.id);
  await agent.getByLabel("Admin key").fill(project.key);
  await agent.getByLabel("Your name").fill("Alex");
  await agent.getByRole("button", { name: "Sign in" }).click();
  const row = agent.locator(".ticket", { hasText: slug });
  await row.waitFor();
  // Titled by the question, never by the "yes" that accepted the offer.
  assert.equal((await row.locator(".title").textContent()).trim(), question);
  await row.click();
  await agent.locator(".ticket-head h1", { hasText: question }).waitFor();
  const note = agent.locator(".thread .note").filter({ hasText: "no answer found" });
  await note.waitFor();
  const text = await note.textContent();
  assert.ok(text.includes("Note · Assistant"), text);
  assert.ok(text.includes(question), `the note quotes the problem: ${text}`);
  // The conversation shows once: as the ticket's first messages. The note sums it up without
  // copying it, and no transcript of the chat repeats it.
  const thread = agent.locator(".thread");
  await thread.locator(".msg").filter({ hasText: "yes" }).last().waitFor();
  assert.equal(await thread.locator(".msg.user").filter({ hasText: question }).count(), 1, "the question is one message");
  assert.equal(await thread.locator(".msg.assistant").filter({ hasText: OFFER }).count(), 1, "the offer is one message");
  assert.ok(!text.includes(OFFER) && !text.includes("couldn't find an answer"), `the note does not copy the answer: ${text}`);
  assert.ok(!text.includes("- Visitor:"), `the note has no transcript: ${text}`);
  assert.ok(text.includes("Summary: the visitor wrote 2 messages, the assistant answered 1 time"), text);
  assert.equal(await agent.locator(".transcript").count(), 0, "the chat is not listed again");
  const detail = await agent.locator(".detail").textContent();
  assert.equal(detail.split("couldn't find an answer").length - 1, 1, "the assistant's answer shows once on the page");
  await shot(agent, "assistant-handoff-inbox");
});

test("an answer cites its article with a link that opens safely in a new tab", async (t) => {
  const { page: visitor, widget } = await openWidget(t);
  const answer = await ask(widget, "How long do refunds take?");
  const link = answer.locator(".sources a.source");
  await link.waitFor();
  assert.equal((await link.textContent()).trim(), "Refunds");
  assert.equal(await link.getAttribute("href"), LINK);
  assert.equal(await link.getAttribute("target"), "_blank");
  assert.equal(await link.getAttribute("rel"), "noopener noreferrer");
  // The Sources line is not repeated in the bubble's text.
  assert.ok(!(await answer.locator(".bubble").textContent()).includes("Sources:"));
  await shot(visitor, "assistant-cited-link");
});

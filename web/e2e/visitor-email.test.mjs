// The widget's "get replies by email" field and the emails it brings (issue 28), as a person
// checks them: the visitor gives an address in the conversation (a wrong one is refused, said
// aloud and shown), leaves, and an agent's reply comes by email to that address, through a real
// SMTP server (scripts/smtp.sh; FLEETY_TEST_SMTP and FLEETY_TEST_SMTP_DIR, which scripts/test.sh
// and scripts/web.sh test set). The email's link opens the conversation in a fresh browser;
// the next burst's email threads under the first; its unsubscribe page stops the emails with
// one click. Screenshots go to target/e2e/.
//
// The server's public URL is a name of its own: the port is the server's to pick, so the links
// are followed on the server under test, as the API tests do.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { axe, browser, callApi, createProject, shot, startHostPage, startServer, until } from "./harness.mjs";

const SMTP = process.env.FLEETY_TEST_SMTP;
const DIR = process.env.FLEETY_TEST_SMTP_DIR;
const PUBLIC = "https://help.acme.test";

let server, project, host, chromium;

before(async () => {
  if (!SMTP || !DIR) {
    throw new Error("needs the SMTP sink: `scripts/web.sh test` starts one, or export what `scripts/smtp.sh env` prints");
  }
  server = await startServer({
    env: {
      FLEETY_PUBLIC_RATE_LIMIT: "100",
      FLEETY_SMTP_URL: SMTP,
      FLEETY_SMTP_FROM: "Acme Support <support@acme.test>",
      FLEETY_PUBLIC_URL: PUBLIC,
      FLEETY_EMAIL_RETRY_SCHEDULE: "200ms",
      FLEETY_VISITOR_EMAIL_AFTER_SECS: "1",
    },
  });
  host = await startHostPage(server.base);
  project = await createProject(server.base, [host.origin], "Mail");
  host.project = project.id;
  chromium = await browser();
});

after(async () => {
  await chromium?.close();
  await host?.close();
  await server?.stop();
});

async function page(t, who, options = { viewport: { width: 1100, height: 760 } }) {
  const context = await chromium.newContext(options);
  t.after(() => context.close());
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`${who} page error:`, e.message));
  return { context, page };
}

const admin = (method, path, body) => callApi(server.base, project.key, method, path, body);
const reply = (slug, content) => admin("POST", `/v1/tickets/${project.id}/${slug}/messages`, { author: "admin", content });

/** The raw messages the sink received for `to`, in the order it numbered them. */
function emailsTo(to) {
  const names = readdirSync(DIR)
    .filter((n) => n.endsWith(".json"))
    .sort((a, b) => parseInt(a, 10) - parseInt(b, 10));
  const out = [];
  for (const name of names) {
    let envelope;
    try {
      envelope = JSON.parse(readFileSync(join(DIR, name), "utf8"));
    } catch {
      continue; // Still being written.
    }
    if (!envelope.to?.includes(to)) continue;
    try {
      out.push(readFileSync(join(DIR, name.replace(/\.json$/, ".eml")), "utf8"));
    } catch {
      continue;
    }
  }
  return out;
}

/** Waits until `count` emails to `to` arrived; all of them. */
function waitForEmails(to, count) {
  return until(`email #${count} to ${to}`, () => {
    const got = emailsTo(to);
    return got.length >= count ? got : null;
  });
}

/** A message's headers (unfolded) and its text part, decoded. */
function parse(raw) {
  const split = raw.indexOf("\r\n\r\n");
  const headers = raw.slice(0, split).replace(/\r\n[ \t]+/g, " ");
  const header = (name) => new RegExp(`^${name}: (.*)$`, "im").exec(headers)?.[1];
  const boundary = /boundary="?([^";\r\n]+)"?/i.exec(headers)?.[1];
  const parts = boundary ? raw.split(`--${boundary}`) : [raw];
  const part = parts.find((p) => /content-type: text\/plain/i.test(p));
  assert.ok(part, "a text part");
  const at = part.indexOf("\r\n\r\n");
  const partHeaders = part.slice(0, at);
  let body = part.slice(at + 4);
  if (/content-transfer-encoding: base64/i.test(partHeaders)) {
    body = Buffer.from(body.replace(/\s+/g, ""), "base64").toString("utf8");
  } else if (/content-transfer-encoding: quoted-printable/i.test(partHeaders)) {
    const bytes = body.replace(/=\r?\n/g, "").replace(/=([0-9A-F]{2})/gi, (_, h) => String.fromCharCode(parseInt(h, 16)));
    body = Buffer.from(bytes, "latin1").toString("utf8");
  }
  return { headers, header, text: body };
}

/** The link to `path` in an email's text, on the server under test. */
function link(text, path) {
  const found = new RegExp(`${PUBLIC.replace(/\./g, "\\.")}${path}\\?token=\\S+`).exec(text)?.[0];
  assert.ok(found, `a ${path} link in ${text}`);
  return server.base + found.slice(PUBLIC.length);
}

test("a visitor who gives an address in the widget gets the replies by email, with a working link and unsubscribe", async (t) => {
  const to = `ada-${Date.now()}-${Math.random().toString(36).slice(2, 8)}@example.com`;

  // The visitor asks for a person; the ticket opens and the optional field shows under it.
  const visitor = await page(t, "visitor");
  await visitor.page.goto(host.origin);
  const widget = visitor.page.locator("fleety-widget");
  await widget.locator(".launcher").click();
  await widget.getByRole("button", { name: "Talk to a person" }).click();
  const notice = widget.locator(".notice").filter({ hasText: "is open" });
  await notice.waitFor();
  const slug = /Ticket (\S+) is open/.exec(await notice.textContent())[1];
  const field = widget.getByLabel("Get replies by email (optional)");
  await field.waitFor();
  await shot(visitor.page, "visitor-email-offer");

  // A wrong address is refused, marked on the field and said aloud; nothing is stored.
  await field.focus();
  await visitor.page.keyboard.type("ada at example");
  await visitor.page.keyboard.press("Enter");
  const problem = widget.getByRole("alert");
  await problem.filter({ hasText: "doesn't look like an email address" }).waitFor();
  assert.equal(await field.getAttribute("aria-invalid"), "true");
  assert.equal((await admin("GET", `/v1/tickets/${project.id}/${slug}`)).visitor, null);
  await shot(visitor.page, "visitor-email-invalid");

  // The right one, by keyboard: saved, confirmed in a live region, shown marked unverified.
  await field.fill("");
  await visitor.page.keyboard.type(to);
  await visitor.page.keyboard.press("Enter");
  const said = widget.getByRole("status").filter({ hasText: `email replies you miss to ${to}` });
  await said.waitFor();
  assert.equal(await said.getAttribute("aria-live"), "polite");
  await widget.locator(".reply-email .to", { hasText: `${to} (unverified)` }).waitFor();
  await widget.getByRole("button", { name: "Change email" }).waitFor();
  const stored = await admin("GET", `/v1/tickets/${project.id}/${slug}`);
  assert.deepEqual(stored.visitor, { name: null, email: to, email_unverified: true });
  assert.deepEqual(await axe(visitor.page, { include: "fleety-widget" }), []);
  await shot(visitor.page, "visitor-email-given");

  // The agents see the address, marked unverified.
  const agent = await page(t, "agent", { viewport: { width: 1280, height: 800 } });
  await agent.page.goto(`${server.base}/inbox`);
  await agent.page.getByLabel("Project id").fill(project.id);
  await agent.page.getByLabel("Admin key").fill(project.key);
  await agent.page.getByLabel("Your name").fill("Alex");
  await agent.page.getByRole("button", { name: "Sign in" }).click();
  await agent.page.locator(".ticket", { hasText: slug }).click();
  await agent.page.locator(".ticket-head .sub", { hasText: `${to} (unverified)` }).waitFor();
  await shot(agent.page, "visitor-email-inbox");
  await agent.context.close();

  // The visitor leaves; an agent answers: one email, to that address, with both links.
  await visitor.context.close();
  await reply(slug, "Your refund is on its way");
  const [raw1] = await waitForEmails(to, 1);
  const first = parse(raw1);
  assert.match(first.text, /Your refund is on its way/);
  assert.ok(first.header("Message-ID"), first.headers);
  assert.equal(first.header("In-Reply-To"), undefined, "the first email starts the thread");
  assert.match(first.header("List-Unsubscribe") ?? "", /\/v1\/email\/unsubscribe\?token=/);

  // The email's link, in a browser that never saw the widget: the conversation, with the reply.
  const reader = await page(t, "reader", { viewport: { width: 900, height: 760 } });
  await reader.page.goto(link(first.text, "/v1/email/conversation"));
  const opened = reader.page.locator("fleety-widget");
  await opened.locator(".message.admin .bubble", { hasText: "Your refund is on its way" }).waitFor();
  await opened.locator(".reply-email .to", { hasText: to }).waitFor();
  await shot(reader.page, "visitor-email-link");
  await reader.context.close();

  // The next burst's email answers the first.
  await reply(slug, "It should arrive on Friday");
  const both = await waitForEmails(to, 2);
  const second = both.map(parse).find((m) => m.header("Message-ID") !== first.header("Message-ID"));
  assert.match(second.text, /It should arrive on Friday/);
  assert.doesNotMatch(second.text, /Your refund is on its way/, "read replies are not sent again");
  assert.equal(second.header("In-Reply-To"), first.header("Message-ID"));
  assert.match(second.header("References") ?? "", new RegExp(first.header("Message-ID").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));

  // Its unsubscribe page: one click, and it says so.
  const leaver = await page(t, "leaver", { viewport: { width: 900, height: 600 } });
  await leaver.page.goto(link(second.text, "/v1/email/unsubscribe"));
  await shot(leaver.page, "visitor-email-unsubscribe");
  await leaver.page.getByRole("heading", { name: "Emails about this conversation" }).waitFor();
  await leaver.page.getByRole("button", { name: "Stop emails about this conversation" }).click();
  await leaver.page.getByRole("status").filter({ hasText: "you will get no more emails about this conversation" }).waitFor();
  assert.deepEqual(await axe(leaver.page), []);
  await shot(leaver.page, "visitor-email-unsubscribed");

  // A later reply sends nothing: another ticket's email, from a reply made after it, arrives
  // while this visitor's count stays at two.
  await reply(slug, "One more thing");
  const witness = `witness-${Date.now()}@example.com`;
  const other = await admin("POST", `/v1/tickets/${project.id}`, { title: "Another", visitor: { email: witness } });
  await reply(other.slug, "Hello");
  await waitForEmails(witness, 1);
  assert.equal(emailsTo(to).length, 2);
});

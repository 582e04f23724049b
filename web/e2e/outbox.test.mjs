// The email outbox in the inbox (issue 28), as an admin checks it: on a server that sends
// email (through the SMTP sink of scripts/smtp.sh; FLEETY_TEST_SMTP and FLEETY_TEST_SMTP_DIR,
// which scripts/web.sh test sets), Settings' Email card lists the emails sent, and a ticket's
// side panel its own; on a server whose SMTP server cannot be reached, a waiting email shows
// why in general words; on a server without SMTP, the card says plainly that nothing is sent.
// Screenshots go to target/e2e/.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { axe, browser, callApi, createProject, shot, startServer, until } from "./harness.mjs";

const SMTP = process.env.FLEETY_TEST_SMTP;
const DIR = process.env.FLEETY_TEST_SMTP_DIR;

let mailing, unreachable, silent, chromium;

before(async () => {
  if (!SMTP || !DIR) {
    throw new Error("needs the SMTP sink: `scripts/web.sh test` starts one, or export what `scripts/smtp.sh env` prints");
  }
  mailing = await startServer({
    env: {
      FLEETY_SMTP_URL: SMTP,
      FLEETY_SMTP_FROM: "Acme Support <support@acme.test>",
      FLEETY_PUBLIC_URL: "https://help.acme.test",
      FLEETY_EMAIL_RETRY_SCHEDULE: "200ms",
      FLEETY_VISITOR_EMAIL_AFTER_SECS: "1",
    },
  });
  // A closed port: every attempt fails to connect, and the next is an hour away.
  unreachable = await startServer({
    env: {
      FLEETY_SMTP_URL: "smtp://127.0.0.1:9?tls=none",
      FLEETY_SMTP_FROM: "Acme Support <support@acme.test>",
      FLEETY_PUBLIC_URL: "https://help.acme.test",
      FLEETY_EMAIL_RETRY_SCHEDULE: "1h",
    },
  });
  silent = await startServer();
  chromium = await browser();
});

after(async () => {
  await chromium?.close();
  await mailing?.stop();
  await unreachable?.stop();
  await silent?.stop();
});

/** An inbox signed in with the project's admin key, open on the live feed. */
async function inbox(t, server, project) {
  const context = await chromium.newContext({ viewport: { width: 1280, height: 860 } });
  t.after(() => context.close());
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("inbox page error:", e.message));
  await page.goto(`${server.base}/inbox`);
  await page.getByLabel("Project id").fill(project.id);
  await page.getByLabel("Admin key").fill(project.key);
  await page.getByLabel("Your name").fill("Sam");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("status").filter({ hasText: "Live" }).waitFor();
  return page;
}

test("with SMTP, the Email card lists what was sent and a ticket shows its own emails", async (t) => {
  const project = await createProject(mailing.base, ["http://127.0.0.1:9"], "Mail");
  const admin = (method, path, body) => callApi(mailing.base, project.key, method, path, body);
  const to = `ada-${Date.now()}@example.com`;
  const ticket = await admin("POST", `/v1/tickets/${project.id}`, { title: "Parcel late", visitor: { name: "Ada", email: to } });
  await admin("POST", `/v1/tickets/${project.id}/${ticket.slug}/messages`, { author: "admin", content: "It left today." });
  await admin("POST", `/v1/projects/${project.id}/invitations`, { email: `eli-${Date.now()}@example.com` });
  await until("both emails sent", async () => {
    const page = await admin("GET", `/v1/projects/${project.id}/emails`);
    return page.emails.length === 2 && page.emails.every((e) => e.status === "sent");
  });

  const page = await inbox(t, mailing, project);
  await page.getByRole("button", { name: "Settings" }).click();
  const card = page.getByRole("region", { name: "Email" });
  await card.getByRole("table", { name: "Emails, newest first" }).waitFor();
  const rows = card.getByRole("row");
  // The header row, then one row per email.
  assert.equal(await rows.count(), 3);
  const visitor = card.getByRole("row").filter({ hasText: "Parcel late" });
  assert.match(await visitor.innerText(), /Replies to the visitor to ada-/);
  assert.match(await visitor.innerText(), /Sent/);
  assert.match(await card.innerText(), /Invitation to eli-/);
  assert.doesNotMatch(await card.innerText(), /sends no email/);
  // Never a body.
  assert.doesNotMatch(await card.innerText(), /It left today/);
  await card.scrollIntoViewIfNeeded();
  await shot(page, "outbox-settings-smtp");
  assert.deepEqual(await axe(page), []);

  await page.getByRole("button", { name: "Tickets" }).click();
  await page.locator(".ticket", { hasText: "Parcel late" }).click();
  await page.getByRole("heading", { name: "Parcel late" }).waitFor();
  const side = page.getByRole("complementary", { name: "Emails about this ticket" });
  await side.waitFor();
  assert.match(await side.innerText(), /Sent\s+Replies to the visitor to ada-/);
  await shot(page, "outbox-ticket");
  assert.deepEqual(await axe(page), []);
});

test("an email the mail server could not take shows why, in general words", async (t) => {
  const project = await createProject(unreachable.base, ["http://127.0.0.1:9"], "Down");
  const admin = (method, path, body) => callApi(unreachable.base, project.key, method, path, body);
  await admin("POST", `/v1/projects/${project.id}/invitations`, { email: "fay@example.com" });
  await until("the first attempt recorded", async () => {
    const page = await admin("GET", `/v1/projects/${project.id}/emails`);
    return page.emails.length === 1 && page.emails[0].attempts === 1;
  });
  const page = await inbox(t, unreachable, project);
  await page.getByRole("button", { name: "Settings" }).click();
  const card = page.getByRole("region", { name: "Email" });
  const row = card.getByRole("row").filter({ hasText: "fay@example.com" });
  await row.waitFor();
  const text = await row.innerText();
  assert.match(text, /Waiting/);
  assert.match(text, /Not sent after 1 try, next try .*: the mail server could not be reached/);
  assert.doesNotMatch(text, /127\.0\.0\.1|refused \(os error/);
  await card.scrollIntoViewIfNeeded();
  await shot(page, "outbox-settings-unreachable");
  assert.deepEqual(await axe(page), []);
});

test("without SMTP, the Email card says the server sends no email", async (t) => {
  const project = await createProject(silent.base, ["http://127.0.0.1:9"], "Quiet");
  const page = await inbox(t, silent, project);
  await page.getByRole("button", { name: "Settings" }).click();
  const card = page.getByRole("region", { name: "Email" });
  const said = card.getByRole("status");
  await said.waitFor();
  assert.match(await said.innerText(), /This server sends no email: SMTP is not configured/);
  assert.match(await card.innerText(), /No email is waiting/);
  await card.scrollIntoViewIfNeeded();
  await shot(page, "outbox-settings-no-smtp");
  assert.deepEqual(await axe(page), []);
});

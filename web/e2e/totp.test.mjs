// A member turns on two-factor authentication from the Account page: the secret is shown as
// text to paste into an authenticator app, a first code turns it on, and the recovery codes
// are shown once. Signed out and back in, the sign-in page asks for a code after the password.
// Codes are computed here (RFC 6238, HMAC-SHA1) from the secret the page showed. Screenshots go
// to target/e2e/.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, test } from "node:test";

import { axe, browser, createProject, shot, startServer } from "./harness.mjs";

const OPERATOR = "e2e-operator-token-0123456789";
const PASSWORD = "correct horse battery";

/** RFC 4648 base32, without padding. */
function base32(text) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of text.replace(/=+$/, "")) {
    value = (value << 5) | alphabet.indexOf(c);
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** The code of the 30-second step `offset` steps from now. */
function totp(secret, offset = 0) {
  const step = Math.floor(Date.now() / 1000 / 30) + offset;
  const counter = Buffer.alloc(8);
  counter.writeBigInt64BE(BigInt(step));
  const h = createHmac("sha1", base32(secret)).update(counter).digest();
  const at = h[19] & 0x0f;
  const bin = ((h[at] & 0x7f) << 24) | (h[at + 1] << 16) | (h[at + 2] << 8) | h[at + 3];
  return String(bin % 1_000_000).padStart(6, "0");
}

let server, project, chromium;

before(async () => {
  server = await startServer();
  project = await createProject(server.base, ["https://example.com"], "Two factors");
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
  await server?.stop();
});

async function signInWithPassword(page) {
  await page.getByLabel("Project id").fill(project.id);
  await page.getByLabel("Email", { exact: true }).fill("olga@example.com");
  await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
}

test("a member turns on two-factor authentication and signs in with a code", async (t) => {
  const context = await chromium.newContext({ viewport: { width: 1280, height: 1000 } });
  t.after(() => context.close());
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(`${server.base}/inbox`);
  await page.getByRole("button", { name: "Use your email and password instead" }).click();
  await signInWithPassword(page);
  await page.getByRole("status").filter({ hasText: "Live" }).waitFor();

  await page.getByRole("button", { name: "Account" }).click();
  await page.getByRole("heading", { name: "Two-factor authentication" }).waitFor();
  await page.getByRole("button", { name: "Turn on two-factor authentication" }).click();
  const secret = await page.getByLabel("Secret", { exact: true }).inputValue();
  assert.match(secret, /^[A-Z2-7]{32}$/);
  const uri = await page.getByLabel("otpauth link").inputValue();
  assert.ok(uri.startsWith("otpauth://totp/") && uri.includes(`secret=${secret}`), uri);
  await shot(page, "totp-enrol");
  assert.deepEqual(await axe(page), []);
  // The previous step's code: the sign-in below uses the current one, which comes after it
  // even if the clock crosses into the next step meanwhile.
  await page.getByLabel("Code from the app").fill(totp(secret, -1));
  await page.getByRole("button", { name: "Turn on", exact: true }).click();
  const codes = (await page.getByLabel("Recovery codes").inputValue()).split("\n");
  assert.equal(codes.length, 10);
  assert.match(codes[0], /^[a-z2-7]{4}(-[a-z2-7]{4}){3}$/);
  await page.getByText("On.").waitFor();
  await shot(page, "totp-recovery-codes");
  assert.deepEqual(await axe(page), []);
  await page.getByRole("button", { name: "Done, I copied it" }).click();
  assert.equal(await page.getByLabel("Recovery codes").count(), 0);
  assert.match(await page.locator("#totp-title ~ form").textContent(), /10 recovery codes left/);

  // Signed out and back in: the password alone is not enough.
  await page.getByRole("button", { name: "Sign out" }).click();
  await signInWithPassword(page);
  const code = page.getByLabel("Code from your authenticator app, or a recovery code");
  await code.waitFor();
  await code.fill("000000" === totp(secret) ? "111111" : "000000");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: "That code is not right." }).waitFor();
  await code.fill(totp(secret));
  await shot(page, "totp-sign-in");
  assert.deepEqual(await axe(page), []);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("status").filter({ hasText: "Live" }).waitFor();
  assert.match(await page.locator(".bar .who").textContent(), /Olga/);
});

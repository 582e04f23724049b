// The visitor is never stranded, and nothing on screen misleads: a message over the limit, a
// closed ticket, a rate limit that ends, agent replies that must not spend the visitor's
// budget, a site the project does not allow, a status changed while the socket was away, a
// server that is down, "Seen" on the right messages, and the widget on a phone. Each test opens
// its own browser context and, where it needs one, its own ticket. The assistant is the
// built-in offline one. Screenshots go to target/e2e/.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";

import { browser, createProject, shot, startHostPage, startServer } from "./harness.mjs";

const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

let server, project, host, chromium;

before(async () => {
  server = await startServer({ env: { FLEETY_PUBLIC_RATE_LIMIT: "100" } });
  host = await startHostPage(server.base);
  project = await createProject(server.base, [host.origin], "Stranded");
  host.project = project.id;
  chromium = await browser();
});

after(async () => {
  await chromium?.close();
  await host?.close();
  await server?.stop();
});

/** A page in a browser context of its own, closed when test `t` ends. */
async function page(t, who, options = {}) {
  const context = await chromium.newContext({ viewport: { width: 1100, height: 760 }, ...options });
  t.after(() => context.close());
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`${who} page error:`, e.message));
  return { context, page };
}

/** A visitor on `origin`'s page with the widget's panel open. */
async function openWidget(t, { origin = host.origin, options, before } = {}) {
  const { context, page: visitor } = await page(t, "visitor", options);
  await before?.(visitor);
  await visitor.goto(origin);
  const widget = visitor.locator("fleety-widget");
  await widget.locator(".launcher").click();
  await widget.locator("textarea").waitFor();
  return { context, page: visitor, widget };
}

async function ask(widget, question) {
  const input = widget.locator("textarea");
  await input.fill(question);
  await input.press("Enter");
  await widget.locator(".message.user", { hasText: question }).waitFor();
  await widget.locator(".message.assistant .bubble").last().filter({ hasText: /\w/ }).waitFor();
  await widget.locator(".typing").waitFor({ state: "hidden" });
}

/** The visitor asks for a person; the slug of the ticket the widget opened. */
async function askForPerson(widget) {
  await widget.getByRole("button", { name: "Talk to a person" }).click();
  const notice = widget.locator(".notice").filter({ hasText: "is open" }).last();
  await notice.waitFor();
  return /Ticket (\S+) is open/.exec(await notice.textContent())[1];
}

/** Calls the agents' API with the admin key. */
async function admin(method, path, body, base = server.base, key = project.key) {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  assert.ok(r.ok, `${method} ${path}: ${r.status} ${text}`);
  return JSON.parse(text);
}

const setStatus = (slug, status) => admin("PATCH", `/v1/tickets/${project.id}/${slug}`, { status });
const agentSays = (slug, content, base, p = project) =>
  admin("POST", `/v1/tickets/${p.id}/${slug}/messages`, { author: "admin", content }, base, p.key);

/** The widget's stored conversation, from the host page's storage. */
function stored(visitor) {
  return visitor.evaluate((id) => JSON.parse(localStorage.getItem(`fleety:v1:${id}`) ?? "null"), project.id);
}

/** Serious or critical accessibility problems axe-core finds in the widget. */
async function axe(visitor) {
  await visitor.addScriptTag({ content: AXE });
  const found = await visitor.evaluate(async () => {
    const r = await window.axe.run({ include: [["fleety-widget"]] }, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help }));
  });
  return found.filter((v) => v.impact === "serious" || v.impact === "critical");
}

/** `promise`, or a failure naming `what` if it has not settled within `ms`. */
function within(promise, ms, what) {
  let timer;
  const late = new Promise((_, fail) => (timer = setTimeout(() => fail(new Error(`${what}: not within ${ms} ms`)), ms)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** A CORS-readable answer the test puts in place of the server's. */
function answer(status, body, headers = {}) {
  return {
    status,
    contentType: "application/json",
    headers: { "Access-Control-Allow-Origin": host.origin, "Access-Control-Expose-Headers": "Retry-After", ...headers },
    body: JSON.stringify(body),
  };
}

test("a message over the limit is held in the composer, and one the server refuses leaves the history with its reason", async (t) => {
  const { page: visitor, widget } = await openWidget(t);
  const input = widget.locator("textarea");
  const send = widget.locator("button.send");

  // Near the limit a counter shows; over it, sending is held and the counter says so.
  await input.fill("x".repeat(3500));
  assert.equal((await widget.locator(".count").textContent()).trim(), "3500 / 4000");
  assert.equal(await send.isDisabled(), false);
  await input.fill("y".repeat(10_000));
  await widget.locator(".count.over", { hasText: "at most 4000 characters" }).waitFor();
  assert.equal(await send.isDisabled(), true);
  await input.press("Enter");
  assert.equal(await widget.locator(".message.user").count(), 0, "nothing was sent");
  assert.deepEqual(await axe(visitor), [], "the counter is accessible");
  await shot(visitor, "widget-too-long");

  // A question the server refuses anyway: the reason is shown, the question leaves the
  // history (and storage) and goes back to the composer.
  const reason = "messages[0].content is longer than 4000 characters";
  await visitor.route("**/v1/chat/tools", (route) => route.fulfill(answer(400, { error: reason })), { times: 1 });
  const question = "Is this one refused?";
  await input.fill(question);
  await input.press("Enter");
  await widget.locator(".banner", { hasText: `Not sent: ${reason}` }).waitFor();
  assert.equal(await widget.locator(".message.user").count(), 0, "the refused question is not in the history");
  // The composer gets it back in the render after the banner's.
  await visitor.waitForFunction((q) => document.querySelector("fleety-widget")?.shadowRoot?.querySelector("textarea")?.value === q, question);
  assert.equal(await input.inputValue(), question, "the composer has it back");
  assert.ok(!JSON.stringify((await stored(visitor))?.chat ?? []).includes(question));

  // The next questions, and a person, still work.
  await ask(widget, "How long do refunds take?");
  assert.match(await widget.locator(".message.assistant .bubble").last().textContent(), /\w/);
  const slug = await askForPerson(widget);
  assert.ok(slug);
});

test("a question over the limit that an older widget stored does not break the chat after a reload", async (t) => {
  const { page: visitor, widget } = await openWidget(t);
  await visitor.evaluate((id) => {
    const chat = [{ id: "local-old", author: "user", content: "z".repeat(10_000) }];
    localStorage.setItem(`fleety:v1:${id}`, JSON.stringify({ v: 1, chat }));
  }, project.id);
  await visitor.reload();
  await widget.locator(".launcher").click();
  await ask(widget, "How long do refunds take?");
  assert.equal(await widget.locator(".banner").count(), 0, "no error");
  assert.equal(await widget.locator(".message.user").count(), 1, "only the new question");
});

test("a closed ticket offers a new conversation, with the earlier one still readable", async (t) => {
  const { page: visitor, widget } = await openWidget(t);
  await ask(widget, "How long do refunds take?");
  const first = await askForPerson(widget);
  await agentSays(first, "Anything else I can do?");
  await widget.locator(".message.admin", { hasText: "Anything else" }).waitFor();
  await setStatus(first, "closed");
  const closed = widget.locator(".closed", { hasText: "This conversation is closed." });
  await closed.waitFor();
  // It survives a reload, and so does the way forward.
  await visitor.reload();
  await widget.locator(".launcher").click();
  await closed.waitFor();
  assert.deepEqual(await axe(visitor), [], "the closed state is accessible");
  await shot(visitor, "widget-ticket-closed");
  await widget.getByRole("button", { name: "Start a new conversation" }).click();
  await widget.locator("textarea").waitFor();
  const earlier = widget.locator(".earlier");
  await earlier.getByText("Earlier conversations").waitFor();
  await earlier.locator(".message.admin", { hasText: "Anything else I can do?" }).waitFor();
  await ask(widget, "Where do refunds go back to?");
  const second = await askForPerson(widget);
  assert.notEqual(second, first, "a new ticket");
  // After a reload the earlier conversation is still there, above the new one.
  await visitor.reload();
  await widget.locator(".launcher").click();
  await widget.locator(".earlier .message.admin", { hasText: "Anything else I can do?" }).waitFor();
  assert.equal((await stored(visitor)).ticket.slug, second);
  assert.deepEqual(await axe(visitor), [], "earlier conversations are accessible");
  await shot(visitor, "widget-new-conversation");
});

test("the composer comes back on its own when a rate limit ends", async (t) => {
  const { widget, page: visitor } = await openWidget(t);
  await visitor.route("**/v1/chat/tools", (route) => route.fulfill(answer(429, { error: "rate limit exceeded" }, { "Retry-After": "2" })), {
    times: 1,
  });
  const input = widget.locator("textarea");
  await input.fill("How long do refunds take?");
  await input.press("Enter");
  await widget.locator(".banner", { hasText: "Too many messages" }).waitFor();
  assert.equal(await input.isDisabled(), true);
  // Without reopening the panel, and without a keystroke, the composer is enabled again.
  await visitor.waitForFunction(() => {
    const root = document.querySelector("fleety-widget").shadowRoot;
    return root.querySelector("textarea")?.disabled === false && !root.querySelector(".banner");
  }, undefined, { timeout: 10_000 });
  await ask(widget, "Where do refunds go back to?");
});

test("agent replies do not spend the visitor's budget, while a client without a token keeps 10 a minute", async (t) => {
  // A server with the seed's own limits: 10 public requests a minute per address.
  const own = await startServer();
  t.after(() => own.stop());
  const page_ = await startHostPage(own.base);
  t.after(() => page_.close());
  const p = await createProject(own.base, [page_.origin], "Limits");
  page_.project = p.id;
  const reads = [];
  const { widget, page: visitor } = await openWidget(t, {
    origin: page_.origin,
    before: (v) =>
      v.on("response", (r) => {
        if (r.url().endsWith("/messages/read")) reads.push({ status: r.status(), limit: r.headers()["x-ratelimit-limit"] });
      }),
  });
  const slug = await askForPerson(widget);
  // Twelve quick replies and three more: the widget marks each read as it arrives.
  let counted;
  const twelve = new Promise((done) => (counted = done));
  visitor.on("response", () => reads.length >= 12 && counted());
  for (let i = 1; i <= 15; i++) await agentSays(slug, `Reply number ${i}`, own.base, p);
  await widget.locator(".message.admin", { hasText: "Reply number 15" }).waitFor();
  await within(twelve, 15_000, "twelve replies marked read");
  // The visitor typed nothing more, and is not told to slow down.
  const input = widget.locator("textarea");
  await input.fill("Thanks for all the replies!");
  await input.press("Enter");
  await widget.locator(".message.user", { hasText: "Thanks for all the replies!" }).locator(".meta").waitFor({ state: "detached" });
  assert.equal(await widget.locator(".banner").count(), 0, "no rate-limit notice");
  for (const r of reads) {
    assert.equal(r.status, 200);
    assert.equal(r.limit, "120", "counted per session");
  }
  // A client without a token (same address) still gets the seed's 429 after 10 a minute.
  let refused;
  const limits = new Set();
  for (let i = 0; i < 25 && !refused; i++) {
    const r = await fetch(`${own.base}/v1/tickets/${p.id}/${slug}`);
    limits.add(r.headers.get("x-ratelimit-limit"));
    if (r.status === 429) refused = r;
    else assert.equal(r.status, 200);
  }
  assert.ok(refused, "a 429 came");
  assert.deepEqual([...limits], ["10"]);
  assert.ok(Number(refused.headers.get("retry-after")) > 0);
});

test("on a site the project does not allow, the widget says so and the console names the setting", async (t) => {
  const elsewhere = await createProject(server.base, ["https://shop.example.com"], "Elsewhere");
  const page_ = await startHostPage(server.base);
  t.after(() => page_.close());
  page_.project = elsewhere.id;
  const warnings = [];
  const { page: visitor, widget } = await openWidget(t, {
    origin: page_.origin,
    before: (v) => v.on("console", (m) => m.type() === "warning" && warnings.push(m.text())),
  });
  await widget.locator(".banner", { hasText: "Chat is not available on this site." }).waitFor();
  assert.equal(await widget.locator("textarea").isDisabled(), true);
  assert.equal(await widget.getByRole("button", { name: "Talk to a person" }).isDisabled(), true);
  const said = warnings.filter((w) => w.startsWith("Fleety:"));
  assert.equal(said.length, 1, `one warning: ${said}`);
  assert.ok(said[0].includes(page_.origin) && said[0].includes("allowed_origins"), said[0]);
  assert.equal(await widget.locator(".banner", { hasText: "offline" }).count(), 0);
  assert.deepEqual(await axe(visitor), []);
  await shot(visitor, "widget-origin-refused");
});

test("a status set while the socket was away is applied when it subscribes again", async (t) => {
  const sockets = [];
  let hold;
  let opened;
  const first = new Promise((done) => (opened = done));
  const { widget, page: visitor } = await openWidget(t, {
    // The ticket's socket goes through the test, which can drop it and hold the next one.
    before: (v) =>
      v.routeWebSocket(/\/ws/, async (ws) => {
        sockets.push(ws);
        opened();
        await hold;
        ws.connectToServer();
      }),
  });
  const slug = await askForPerson(widget);
  await first;
  let release;
  hold = new Promise((done) => (release = done));
  await sockets[sockets.length - 1].close();
  // While the socket is away, the agent resolves the ticket; then the socket may come back.
  await setStatus(slug, "resolved");
  release();
  await widget.locator(".notice", { hasText: "Status: resolved" }).waitFor();
  assert.equal((await stored(visitor)).ticket.status, "resolved");
});

test("a server that does not answer is not called the visitor's being offline", async (t) => {
  const { widget } = await openWidget(t, {
    before: (v) => v.route(`${server.base}/**`, (route) => (route.request().url().includes("/widget") ? route.continue() : route.abort("connectionrefused"))),
  });
  const input = widget.locator("textarea");
  await input.fill("Hello?");
  await input.press("Enter");
  await widget.locator(".banner", { hasText: "Can't reach support" }).waitFor();
  assert.equal(await widget.locator(".banner", { hasText: "offline" }).count(), 0);
});

test("the inbox's reconnecting state is not shown in the live state's green", async (t) => {
  let cut = false;
  const live = [];
  const { page: agent } = await page(t, "agent", { viewport: { width: 1280, height: 800 } });
  await agent.routeWebSocket(/\/feed/, (ws) => {
    if (cut) return ws.close();
    live.push(ws);
    ws.connectToServer();
  });
  await agent.goto(`${server.base}/inbox`);
  await agent.getByLabel("Project id").fill(project.id);
  await agent.getByLabel("Admin key").fill(project.key);
  await agent.getByLabel("Your name").fill("Alex");
  await agent.getByRole("button", { name: "Sign in" }).click();
  const state = agent.getByRole("status").filter({ hasText: /Live|Reconnecting|Connecting/ });
  await agent.getByRole("status").filter({ hasText: "Live" }).waitFor();
  const green = await state.evaluate((el) => getComputedStyle(el).backgroundColor);
  cut = true;
  await live[live.length - 1].close();
  await agent.getByRole("status").filter({ hasText: "Reconnecting…" }).waitFor();
  const reconnecting = await state.evaluate((el) => getComputedStyle(el).backgroundColor);
  assert.notEqual(reconnecting, green, `reconnecting is ${reconnecting}, live ${green}`);
});

test("Seen is shown under the visitor's own messages only, after a reload too", async (t) => {
  const { page: visitor, widget } = await openWidget(t);
  await ask(widget, "How long do refunds take?");
  const slug = await askForPerson(widget);
  await agentSays(slug, "I'm looking into it.");
  await widget.locator(".message.admin", { hasText: "looking into it" }).waitFor();
  await admin("PATCH", `/v1/tickets/${project.id}/${slug}/messages/read`, { reader: "admin" });
  await widget.locator(".message.user .seen").first().waitFor();
  await visitor.reload();
  await widget.locator(".launcher").click();
  await widget.locator(".message.user .seen").first().waitFor();
  assert.equal(await widget.locator(".message.admin .seen").count(), 0, "not under the agent's");
  assert.equal(await widget.locator(".message.assistant .seen").count(), 0, "not under the assistant's");
});

test("small things: the newest message in view, lines kept on reload, focus rings, no slug, a close icon", async (t) => {
  const { page: visitor, widget } = await openWidget(t);
  const slug = await askForPerson(widget);
  const handoff = widget.locator(".message.assistant", { hasText: "I've created a support ticket" });
  await handoff.waitFor();
  await setStatus(slug, "pending");
  await widget.locator(".notice", { hasText: "Status: waiting for you" }).waitFor();
  for (let i = 1; i <= 30; i++) await agentSays(slug, `Step ${i} of the answer.`);
  await widget.locator(".message.admin", { hasText: "Step 30 of" }).waitFor();

  // The visitor's subtitle is not the ticket's slug; the open launcher shows a close icon.
  assert.ok(!(await widget.locator("header p").textContent()).includes(slug));
  assert.equal(await widget.locator(".launcher svg.shut").isVisible(), true);
  assert.equal(await widget.locator(".launcher svg.chat").isVisible(), false);

  await visitor.reload();
  assert.equal(await widget.locator(".launcher svg.chat").isVisible(), true);
  await widget.locator(".launcher").click();
  await widget.locator(".message.admin", { hasText: "Step 30 of" }).waitFor();
  // The hand-off and the status line are still there after the reload.
  await handoff.waitFor();
  await widget.locator(".notice", { hasText: "Status: waiting for you" }).waitFor();
  // It opens at the newest message.
  const atBottom = await widget.locator(".log").evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight < 4);
  assert.ok(atBottom, "the log is scrolled to the newest message");

  // The tabs show a focus ring when reached from the keyboard.
  await widget.locator("textarea").focus();
  let ring;
  for (let i = 0; i < 20 && !ring; i++) {
    await visitor.keyboard.press("Shift+Tab");
    ring = await visitor.evaluate(() => {
      const el = document.querySelector("fleety-widget").shadowRoot.activeElement;
      return el?.getAttribute("role") === "tab" ? getComputedStyle(el).outlineStyle : undefined;
    });
  }
  assert.ok(ring && ring !== "none", `a tab's outline: ${ring}`);
  await shot(visitor, "widget-desktop");
});

test("the inbox shows the visitor typing where the agent is looking", async (t) => {
  const { widget } = await openWidget(t);
  const slug = await askForPerson(widget);
  for (let i = 1; i <= 40; i++) await agentSays(slug, `Line ${i} of a long thread.`);
  const { page: agent } = await page(t, "agent", { viewport: { width: 1280, height: 800 } });
  await agent.goto(`${server.base}/inbox`);
  await agent.getByLabel("Project id").fill(project.id);
  await agent.getByLabel("Admin key").fill(project.key);
  await agent.getByLabel("Your name").fill("Alex");
  await agent.getByRole("button", { name: "Sign in" }).click();
  await agent.getByRole("status").filter({ hasText: "Live" }).waitFor();
  await agent.locator(".ticket", { hasText: slug }).click();
  await agent.locator(".thread .msg.admin", { hasText: "Line 40 of" }).waitFor();
  await widget.locator("textarea").pressSequentially("I am writing", { delay: 20 });
  const typing = agent.getByText("The visitor is typing…");
  await typing.waitFor();
  const seen = await typing.evaluate((el) => {
    const box = el.getBoundingClientRect();
    const hit = document.elementFromPoint(box.left + Math.min(20, box.width / 2), box.top + box.height / 2);
    return hit === el || el.contains(hit);
  });
  assert.ok(seen, "the typing line is in view, not below the thread's visible part");
  await shot(agent, "inbox-typing");
});

test("on a phone the open panel fills the screen and the composer does not make iOS zoom", async (t) => {
  const { page: visitor, widget } = await openWidget(t, {
    options: { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 },
  });
  const box = await widget.getByRole("dialog").boundingBox();
  assert.ok(box.x <= 0.5 && box.y <= 0.5, `at the corner: ${JSON.stringify(box)}`);
  assert.ok(box.width >= 389 && box.height >= 843, `the whole screen: ${JSON.stringify(box)}`);
  const size = await widget.locator("textarea").evaluate((el) => parseFloat(getComputedStyle(el).fontSize));
  assert.ok(size >= 16, `the composer's font is ${size}px`);
  await ask(widget, "How long do refunds take?");
  assert.deepEqual(await axe(visitor), []);
  await shot(visitor, "widget-phone");
  // Its own close button brings the launcher back.
  await widget.getByRole("button", { name: "Close" }).click();
  await widget.locator(".launcher").waitFor();
});

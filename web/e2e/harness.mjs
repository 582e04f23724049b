// What the browser tests share: a Fleety server of their own (the binary named by FLEETY_BIN,
// else the workspace's debug build) on a fresh data directory, a project whose allowed origin is
// a host page served here, and headless Chromium (Debian's, driven by playwright-core).

import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "../..");
export const ARTIFACTS = process.env.FLEETY_E2E_ARTIFACTS ?? join(ROOT, "target", "e2e");
export const OPERATOR = "e2e-operator-token-0123456789";
export const PASSWORD = "correct horse battery";

/**
 * Waits until `check` gives a value, and returns it: for what lands outside the page (an email
 * in the SMTP sink's directory, a server answering). A condition checked every 100 ms, never a
 * timing; `tries` only bounds a test that would otherwise hang.
 */
export async function until(what, check, tries = 300) {
  for (let i = 0; i < tries; i++) {
    const found = await check();
    if (found) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`gave up waiting for ${what}`);
}

async function waitHealthy(base, child) {
  await until(
    "fleety to become healthy",
    async () => {
      if (child.exitCode !== null) throw new Error(`fleety exited with ${child.exitCode}`);
      try {
        return (await fetch(`${base}/healthz`)).ok;
      } catch {
        return false; // Not listening yet.
      }
    },
    600,
  );
}

/** The port in a starting server's banner ("Fleety is listening on http://host:port"). */
function bannerPort(child) {
  return new Promise((done, fail) => {
    let seen = "";
    const onData = (chunk) => {
      seen += chunk;
      const end = seen.indexOf("\n");
      if (end < 0) return;
      child.stdout.off("data", onData);
      // The rest of what it says still reaches the test's output.
      process.stdout.write(seen.slice(end + 1));
      child.stdout.pipe(process.stdout);
      const port = Number(seen.slice(0, end).trim().split(":").pop());
      if (Number.isInteger(port) && port > 0) done(port);
      else fail(new Error(`no port in the banner: ${seen.slice(0, end)}`));
    };
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", onData);
    child.once("exit", (code) => fail(new Error(`fleety exited with ${code} before listening`)));
  });
}

/**
 * Starts a Fleety server; `stop()` ends it (SIGTERM), `kill()` ends it at once. The server picks
 * its own port: one found free here could be taken before the server binds it.
 */
export async function startServer({ dataDir, env = {} } = {}) {
  const bin = process.env.FLEETY_BIN ?? join(ROOT, "target", "debug", "fleety");
  // A directory made here is the server's alone and goes when it stops: runs would otherwise
  // leave a store behind each time.
  const owned = dataDir === undefined;
  dataDir ??= mkdtempSync(join(tmpdir(), "fleety-e2e-"));
  const child = spawn(bin, [], {
    env: {
      PATH: process.env.PATH,
      FLEETY_LISTEN: "127.0.0.1:0",
      FLEETY_DATA_DIR: dataDir,
      FLEETY_OPERATOR_TOKEN: OPERATOR,
      FLEETY_LOG: "warn",
      ...env,
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const port = await bannerPort(child);
  const base = `http://127.0.0.1:${port}`;
  await waitHealthy(base, child);
  const exited = new Promise((done) => child.once("exit", done)).then(() => {
    if (owned) rmSync(dataDir, { recursive: true, force: true });
  });
  return {
    base,
    port,
    dataDir,
    async stop() {
      child.kill("SIGTERM");
      await exited;
    },
    async kill() {
      child.kill("SIGKILL");
      await exited;
    },
  };
}

/** Creates a project allowing `origins`, with a help-center article; its id and admin key. */
export async function createProject(base, origins, name = "Acme") {
  const r = await fetch(`${base}/v1/admin/projects`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${OPERATOR}` },
    body: JSON.stringify({ name, allowed_origins: origins }),
  });
  if (r.status !== 201) throw new Error(`project: ${r.status} ${await r.text()}`);
  const project = await r.json();
  const article = await fetch(`${base}/v1/projects/${project.project_id}/kb/articles`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${project.admin_key}` },
    body: JSON.stringify({
      title: "Refunds",
      body: "Refunds go back to the original payment method within five working days.",
      tags: ["billing"],
    }),
  });
  if (article.status !== 201) throw new Error(`article: ${article.status}`);
  return { id: project.project_id, key: project.admin_key };
}

/**
 * Calls the API at `base` with the bearer `key`, failing the test on an error answer; the
 * answer's JSON.
 */
export async function callApi(base, key, method, path, body) {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return JSON.parse(text);
}

/**
 * Serves a customer's page with the embed snippet, and CSS hostile to embedded widgets. The
 * page is on its own origin, as on a real site. It listens before the project exists, since the
 * project must allow its origin; set `project` on the returned object before a page loads it.
 * `script` is more of the page's own script, run before the widget's (commands to queue).
 */
export async function startHostPage(base, { locale, script = "" } = {}) {
  const hostile = `
    * { all: unset !important; }
    html, body { display: block !important; font: 40px/1 "Comic Sans MS", cursive !important; color: red !important; }
    div, span, button, p { display: inline !important; border: 5px dashed lime !important; }
    body * { transform: rotate(1deg) !important; }
  `;
  const html = (project) => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Acme shop</title>
    <style>${hostile}</style></head><body>
    <main><h1>Acme shop</h1><p>Our products, with hostile global CSS.</p></main>
    <script>window.Fleety = window.Fleety || []; Fleety.push(['setTheme', {color: '#0b7285'}]);
      ${locale ? `Fleety.push(['setLocale', '${locale}']);` : ""}
      window.fleetyMessages = []; Fleety.push(['on', 'message', function (m) { window.fleetyMessages.push(m); }]);
      ${script}</script>
    <script src="${base}/widget.js" data-project="${project}" async></script>
    </body></html>`;
  const server = createServer((req, res) => {
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    res.end(html(host.project));
  });
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  const host = {
    origin: `http://127.0.0.1:${server.address().port}`,
    project: undefined,
    close: () => new Promise((done) => server.close(done)),
  };
  return host;
}

export async function browser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** Saves a screenshot as a test artefact. */
export async function shot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path });
  return path;
}

export function cleanup(dir) {
  rmSync(dir, { recursive: true, force: true });
}

export function writeArtifact(name, text) {
  mkdirSync(ARTIFACTS, { recursive: true });
  writeFileSync(join(ARTIFACTS, name), text);
}

/** Adds a member to `project` by the operator API (active at once); their id. */
export async function addMember(base, project, { email, name, role = "agent", password = PASSWORD }) {
  const r = await fetch(`${base}/v1/admin/projects/${project}/members`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${OPERATOR}` },
    body: JSON.stringify({ email, name, password, role }),
  });
  if (r.status !== 201) throw new Error(`member: ${r.status} ${await r.text()}`);
  return (await r.json()).id;
}

/**
 * Signs a member in to the inbox with their email and password. With `live` (the default) it
 * waits until the inbox is open on the live feed; without, it only submits the form (for a
 * refusal the test then reads).
 */
export async function signIn(page, base, project, email, { password = PASSWORD, live = true } = {}) {
  await page.goto(`${base}/inbox`);
  await page.getByRole("button", { name: "Use your email and password instead" }).click();
  await page.getByLabel("Project id").fill(project);
  await page.getByLabel("Email", { exact: true }).fill(email);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  if (live) await page.getByRole("status").filter({ hasText: "Live" }).waitFor();
}

const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/**
 * The page's serious and critical accessibility violations, as axe-core finds them. `include`
 * (a selector) limits the check to that element: on a customer's page, the widget alone, since
 * the host page's hostile CSS is not ours to judge.
 */
export async function axe(page, { include } = {}) {
  await page.evaluate(AXE);
  const result = await page.evaluate(
    (include) => window.axe.run(include ? { include: [[include]] } : document, { resultTypes: ["violations"] }),
    include,
  );
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

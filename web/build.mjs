// Builds the web front ends into dist/, which the server embeds (`cargo run` needs no Node):
//   dist/widget.js      the loader behind the embed snippet (at most 10 KB gzipped)
//   dist/widget-ui.js   the widget's panel, loaded on first open or when idle (at most 80 KB)
//   dist/inbox.js       the agents' inbox
//   dist/inbox.html     the inbox's page
// plus a .gz beside each script, and manifest.json with sizes and content hashes. The build is
// reproducible: the same sources and lock file give the same bytes, which CI checks.
//
//   node build.mjs           build, and fail if a budget is exceeded
//   node build.mjs --check   build, then fail if dist/ differs from what is committed

import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

const BUDGETS = { "widget.js": 10 * 1024, "widget-ui.js": 80 * 1024, "inbox.js": 120 * 1024 };

const common = {
  bundle: true,
  minify: true,
  write: false,
  target: ["es2020"],
  legalComments: "none",
  jsx: "automatic",
  jsxImportSource: "preact",
  logLevel: "warning",
};

const hash = (bytes) => createHash("sha256").update(bytes).digest("hex").slice(0, 12);

async function bundle(entry, options) {
  const result = await esbuild.build({ ...common, entryPoints: [entry], ...options });
  return result.outputFiles[0].contents;
}

const ui = await bundle("src/widget/ui.tsx", { format: "esm" });
const loader = await bundle("src/widget/loader.ts", {
  format: "iife",
  define: { UI_VERSION: JSON.stringify(hash(ui)) },
});
const inbox = await bundle("src/inbox/main.tsx", { format: "iife" });
const page = readFileSync("src/inbox/index.html");

mkdirSync("dist", { recursive: true });
const files = { "widget.js": loader, "widget-ui.js": ui, "inbox.js": inbox, "inbox.html": page };
const manifest = {};
let over = false;
for (const [name, bytes] of Object.entries(files)) {
  const gz = gzipSync(bytes, { level: 9 });
  writeFileSync(`dist/${name}`, bytes);
  writeFileSync(`dist/${name}.gz`, gz);
  manifest[name] = { bytes: bytes.length, gzip: gz.length, hash: hash(bytes) };
  const budget = BUDGETS[name];
  const verdict = budget ? (gz.length <= budget ? `within ${budget}` : `OVER ${budget}`) : "";
  console.log(`${name.padEnd(14)} ${String(bytes.length).padStart(8)} B  ${String(gz.length).padStart(7)} B gzipped  ${verdict}`);
  if (budget && gz.length > budget) over = true;
}
writeFileSync("dist/manifest.json", JSON.stringify(manifest, null, 2) + "\n");
if (over) {
  console.error("a size budget is exceeded");
  process.exit(1);
}

if (process.argv.includes("--check")) {
  try {
    execFileSync("git", ["diff", "--exit-code", "--stat", "--", "dist"], { stdio: "inherit" });
  } catch {
    console.error("dist/ differs from the committed build: run `npm run build` in web/ and commit dist/");
    process.exit(1);
  }
}

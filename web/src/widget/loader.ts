// The embed snippet's script:
//   <script src="https://HOST/widget.js" data-project="ID" async></script>
// It draws the launcher in a shadow root, takes commands from `window.Fleety` (an array a page
// may fill before this script has loaded), and loads the rest of the widget on first open or
// when the page is idle. It stays small because every page of the host site loads it.

import { LAUNCHER_CSS } from "./launcher-css";
import type { Command, Identity, Listener, Shell, Theme, Visitor } from "./shell";

declare const UI_VERSION: string;

type Queue = Command[] | { push(command: Command): void };

declare global {
  interface Window {
    Fleety?: Queue;
  }
}

const ICON =
  '<svg class="chat" viewBox="0 0 24 24" width="28" height="28" aria-hidden="true" focusable="false">' +
  '<path fill="currentColor" d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg>' +
  '<svg class="shut" viewBox="0 0 24 24" width="24" height="24" aria-hidden="true" focusable="false">' +
  '<path stroke="currentColor" stroke-width="2.5" stroke-linecap="round" d="M6 6l12 12M18 6L6 18"/></svg>';

function start(script: HTMLScriptElement) {
  const project = script.dataset.project;
  if (!project) {
    console.warn("Fleety: the widget's script tag needs data-project");
    return;
  }
  const base = new URL(script.src, location.href).origin;

  // A custom element of our own: page CSS that targets `div` or classes never matches it.
  const host = document.createElement("fleety-widget");
  const root = host.attachShadow({ mode: "open" });
  root.innerHTML =
    `<style>${LAUNCHER_CSS}</style>` +
    `<div class="panel" part="panel" hidden></div>` +
    `<button class="launcher" type="button" aria-haspopup="dialog" aria-expanded="false">` +
    `${ICON}<span class="badge" hidden></span></button>`;
  const launcher = root.querySelector(".launcher") as HTMLButtonElement;
  const badge = root.querySelector(".badge") as HTMLElement;
  const panel = root.querySelector(".panel") as HTMLElement;

  const listeners: Listener[] = [];
  const state = {
    open: false,
    locale: (script.dataset.locale || navigator.language || "en").toLowerCase(),
    theme: {} as Theme,
    visitor: undefined as Visitor | undefined,
    identity: undefined as Identity | undefined,
  };
  let ui: Promise<Shell["ui"]> | undefined;
  let mounted: Shell["ui"] | undefined;

  const shell: Shell = {
    base,
    project,
    root,
    panel,
    launcher,
    get locale() {
      return state.locale;
    },
    get visitor() {
      return state.visitor;
    },
    setBadge(count) {
      badge.hidden = count <= 0;
      badge.textContent = count > 9 ? "9+" : String(count);
      launcher.setAttribute("aria-label", shell.label(count));
    },
    label: (count) => (count > 0 ? `Open support chat (${count} unread)` : "Open support chat"),
    emit(event, payload) {
      for (const l of listeners) {
        if (l.event === event) {
          try {
            l.fn(payload);
          } catch (e) {
            console.error("Fleety: a listener failed", e);
          }
        }
      }
    },
    close: () => setOpen(false),
    ui: undefined,
  };

  function load(): Promise<Shell["ui"]> {
    ui ??= import(`${base}/widget/ui.js?v=${UI_VERSION}`).then((m) => {
      mounted = m.mount(shell);
      shell.ui = mounted;
      mounted?.setLocale(state.locale);
      if (state.identity) mounted?.identify(state.identity);
      return mounted;
    });
    return ui;
  }

  function setOpen(open: boolean) {
    state.open = open;
    host.toggleAttribute("data-open", open);
    launcher.setAttribute("aria-expanded", String(open));
    panel.hidden = !open;
    if (open) {
      load().then((u) => u?.opened());
    } else {
      mounted?.closed();
      launcher.focus();
    }
  }

  function applyTheme(theme: Theme) {
    state.theme = { ...state.theme, ...theme };
    const t = state.theme;
    const vars: [string, string | undefined][] = [
      ["--fleety-accent", t.color],
      ["--fleety-font", t.font],
      ["--fleety-radius", t.radius],
    ];
    for (const [name, value] of vars) {
      if (value) host.style.setProperty(name, value);
    }
    host.setAttribute("data-position", t.position === "left" ? "left" : "right");
  }

  function run(command: Command) {
    const [name, ...args] = command;
    switch (name) {
      case "open":
        return setOpen(true);
      case "close":
        return setOpen(false);
      case "toggle":
        return setOpen(!state.open);
      case "setLocale":
        state.locale = String(args[0] || "en").toLowerCase();
        return mounted?.setLocale(state.locale);
      case "setTheme":
        return applyTheme((args[0] || {}) as Theme);
      case "setVisitor":
        state.visitor = visitor(args[0]);
        return;
      case "on":
        if (typeof args[1] === "function") {
          listeners.push({ event: String(args[0]), fn: args[1] as (p: unknown) => void });
        }
        return;
      case "identify": {
        const identity = args[0];
        if (!identity || typeof identity !== "object") {
          console.warn("Fleety: identify needs an object: {user_id, user_hash} or {token}");
          return;
        }
        state.identity = identity as Identity;
        return mounted?.identify(state.identity);
      }
      case "openTicket": {
        // The page behind a visitor's email link: that ticket's conversation, shown at once.
        const slug = String(args[0] || "");
        if (!slug) return;
        setOpen(true);
        return load().then((u) => u?.openTicket(slug));
      }
      case "reset":
        // The page's user signed out: the next session is anonymous.
        state.identity = undefined;
        return load().then((u) => u?.reset());
      default:
        console.warn(`Fleety: unknown command ${String(name)}`);
    }
  }

  launcher.addEventListener("click", () => setOpen(!state.open));
  applyTheme({});
  shell.setBadge(0);
  (document.body || document.documentElement).appendChild(host);

  const queued = Array.isArray(window.Fleety) ? window.Fleety : [];
  window.Fleety = { push: (command: Command) => run(command) };
  for (const command of queued) run(command);

  // The rest loads when the browser is idle, so a reply that arrives while the panel is closed
  // can light the badge.
  const idle = window.requestIdleCallback ?? ((fn: () => void) => setTimeout(fn, 1500));
  idle(() => load(), { timeout: 4000 });
}

/** The page's `{name, email}`, each kept only when the server would take it (a name of 1 to
 * 80 characters without control characters, an email address's shape): a part it would refuse
 * is left out with a warning, so it never fails the visitor's conversation. */
function visitor(raw: unknown): Visitor | undefined {
  const given = (raw ?? {}) as Record<string, unknown>;
  const text = (key: string, ok: (v: string) => boolean) => {
    const v = given[key];
    if (v === undefined || v === null || v === "") return undefined;
    if (typeof v === "string" && ok(v.trim())) return v.trim();
    console.warn(`Fleety: setVisitor's ${key} is not valid and is left out`);
    return undefined;
  };
  const name = text("name", (v) => v.length > 0 && [...v].length <= 80 && !/[\0-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]/.test(v));
  const email = text("email", (v) => v.length <= 254 && /^[\w.!#$%&'*+/=?^`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+$/.test(v));
  return name || email ? { name, email } : undefined;
}

const current = document.currentScript as HTMLScriptElement | null;
if (current) start(current);

// The agent's alerts while the inbox tab is hidden: a sound and a browser notification, for a
// new ticket and for the visitor's reply on a ticket assigned to this agent. Each can be
// switched off; the choice is kept in this browser only. When the browser blocks
// notifications (or the sound, until the page is clicked), the agent is told so.

import { useEffect, useState } from "preact/hooks";

const KEY = "fleety:inbox-alerts";

export interface AlertPrefs {
  sound: boolean;
  notify: boolean;
}

export function loadPrefs(): AlertPrefs {
  try {
    const saved = JSON.parse(localStorage.getItem(KEY) ?? "{}") as Partial<AlertPrefs>;
    return { sound: saved.sound !== false, notify: saved.notify !== false };
  } catch {
    return { sound: true, notify: true };
  }
}

function savePrefs(prefs: AlertPrefs) {
  try {
    localStorage.setItem(KEY, JSON.stringify(prefs));
  } catch {
    // Storage refused: the choice lasts as long as the page.
  }
}

type Blocked = { notify: boolean; sound: boolean };
const blockedListeners = new Set<(b: Blocked) => void>();
let blocked: Blocked = { notify: false, sound: false };
function setBlocked(change: Partial<Blocked>) {
  blocked = { ...blocked, ...change };
  for (const l of blockedListeners) l(blocked);
}

function notificationsBlocked(): boolean {
  return !("Notification" in window) || Notification.permission === "denied";
}

let audio: AudioContext | undefined;

/** A short tone; reports a browser that keeps audio suspended until the page is clicked. */
function beep() {
  try {
    audio ??= new AudioContext();
    const ctx = audio;
    if (ctx.state === "suspended") {
      // Browsers keep audio suspended until the page has been used: then this tone is silent.
      void ctx.resume().then(
        () => setBlocked({ sound: ctx.state !== "running" }),
        () => setBlocked({ sound: true }),
      );
    }
    const tone = ctx.createOscillator();
    const gain = ctx.createGain();
    tone.frequency.value = 880;
    gain.gain.setValueAtTime(0.08, ctx.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + 0.3);
    tone.connect(gain).connect(ctx.destination);
    tone.start();
    tone.stop(ctx.currentTime + 0.3);
  } catch {
    setBlocked({ sound: true });
  }
}

/** Alerts the agent, as far as their switches and the browser allow; only while the tab is
 * hidden (an agent looking at the inbox sees the list change). */
export function alertAgent(title: string, body: string) {
  if (document.visibilityState !== "hidden") return;
  const prefs = loadPrefs();
  if (prefs.sound) beep();
  if (!prefs.notify) return;
  if (notificationsBlocked()) {
    setBlocked({ notify: true });
    return;
  }
  if (Notification.permission === "granted") {
    new Notification(title, { body: body.slice(0, 140), tag: `fleety-${title}` });
  }
}

/** The switches, in the inbox's bar, with a notice when the browser blocks an alert. */
export function AlertSettings() {
  const [prefs, setPrefs] = useState(loadPrefs);
  const [open, setOpen] = useState(false);
  const [state, setState] = useState<Blocked>({ ...blocked, notify: blocked.notify || notificationsBlocked() });
  useEffect(() => {
    const l = (b: Blocked) => setState({ ...b, notify: b.notify || notificationsBlocked() });
    blockedListeners.add(l);
    // A click lets the browser play sound from then on.
    const unlock = () => {
      if (audio?.state === "suspended") void audio.resume().then(() => setBlocked({ sound: false }));
    };
    document.addEventListener("pointerdown", unlock);
    return () => {
      blockedListeners.delete(l);
      document.removeEventListener("pointerdown", unlock);
    };
  }, []);
  const change = (next: AlertPrefs) => {
    setPrefs(next);
    savePrefs(next);
    // Asked on the click, as browsers require.
    if (next.notify && "Notification" in window && Notification.permission === "default") {
      void Notification.requestPermission().then(() => setState((s) => ({ ...s, notify: notificationsBlocked() })));
    }
  };
  const warn = (prefs.notify && state.notify) || (prefs.sound && state.sound);
  return (
    <div class="alerts">
      <button type="button" class="link" aria-expanded={open} aria-controls="alert-settings" onClick={() => setOpen(!open)}>
        Alerts{warn ? " ⚠" : ""}
      </button>
      {open && (
        <div id="alert-settings" class="alert-settings" role="group" aria-label="Alerts while this tab is hidden">
          <p class="hint">For a new ticket, and for a reply on a ticket assigned to you, while this tab is hidden.</p>
          <label class="check">
            <input type="checkbox" checked={prefs.sound} onChange={(e) => change({ ...prefs, sound: (e.target as HTMLInputElement).checked })} /> Play a sound
          </label>
          <label class="check">
            <input type="checkbox" checked={prefs.notify} onChange={(e) => change({ ...prefs, notify: (e.target as HTMLInputElement).checked })} /> Show a
            notification
          </label>
          {prefs.notify && state.notify && (
            <p class="notice blocked" role="status">
              Your browser blocks notifications from this site. Allow them in the browser's site settings to be notified.
            </p>
          )}
          {prefs.sound && state.sound && (
            <p class="notice blocked" role="status">
              Your browser blocked the sound. Click anywhere in the inbox to allow it.
            </p>
          )}
        </div>
      )}
      {!open && warn && (
        <span class="visually-hidden" role="status">
          The browser blocks some alerts: open Alerts to see which.
        </span>
      )}
    </div>
  );
}

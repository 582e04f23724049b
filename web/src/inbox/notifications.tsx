// The Account page's email switches: which emails the member receives about this project's
// tickets (a new ticket, one assigned to them, a visitor's message while they are away).
// Turning one off is how a member stops those emails; they carry no unsubscribe link. The
// admin key is no member and has none: the card is left out then.

import { useEffect, useState } from "preact/hooks";

import type { Api } from "./api";

type Key = "new_ticket" | "assigned" | "visitor_reply";

const SWITCHES: { key: Key; label: string; hint: string }[] = [
  { key: "new_ticket", label: "A new ticket", hint: "Every ticket opened in this project. Off at first: a busy desk would drown." },
  { key: "assigned", label: "A ticket assigned to me", hint: "When someone else assigns you a ticket." },
  { key: "visitor_reply", label: "A visitor's message on my ticket", hint: "When the visitor writes on a ticket assigned to you while you are not in the inbox." },
];

type View = Record<Key, boolean> & { email_enabled: boolean };

export function EmailSwitches({ api }: { api: Api }) {
  const [view, setView] = useState<View>();
  const [hidden, setHidden] = useState(false);
  const [error, setError] = useState<string>();
  useEffect(() => {
    api.notifications().then(setView, () => setHidden(true));
  }, []);
  if (hidden) return null;
  const flip = async (key: Key, on: boolean) => {
    try {
      setView(await api.setNotifications({ [key]: on }));
      setError(undefined);
    } catch (e) {
      setError((e as Error).message);
    }
  };
  return (
    <section class="card" aria-labelledby="emails-title">
      <h2 id="emails-title">Emails to me</h2>
      {view && !view.email_enabled && <p class="hint">This server sends no email: your choices are kept for when it does.</p>}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {!view ? (
        <p class="empty">Loading…</p>
      ) : (
        SWITCHES.map((s) => (
          <p key={s.key}>
            <label>
              <input type="checkbox" role="switch" checked={view[s.key]} onChange={(e) => flip(s.key, (e.target as HTMLInputElement).checked)} /> {s.label}
            </label>
            <br />
            <span class="hint">{s.hint}</span>
          </p>
        ))
      )}
    </section>
  );
}

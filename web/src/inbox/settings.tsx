// The project's settings an agent manages: the assistant's name, greeting and guidance, the
// origins the widget may run on, the canned replies, the webhook endpoints with their
// delivery logs, and the email outbox.

import { useEffect, useState } from "preact/hooks";

import type { Api, Delivery, Project, Webhook, WebhookEvent } from "./api";
import { CannedReplies } from "./canned";
import { EmailOutbox } from "./outbox";
import { AssistantOutcomesPanel } from "./outcomes";

const EVENTS: WebhookEvent[] = ["ticket.created", "ticket.status_changed", "message.created", "ticket.assigned", "ticket.rated"];

export function Settings({ api }: { api: Api }) {
  return (
    <div class="settings">
      <AssistantOutcomesPanel api={api} />
      <Assistant api={api} />
      <Origins api={api} />
      <Satisfaction api={api} />
      <TicketAccess api={api} />
      <Retention api={api} />
      <CannedReplies api={api} />
      <Webhooks api={api} />
      <EmailOutbox api={api} />
    </div>
  );
}

/** The server's limits (characters), as the API description states them. */
const LIMITS = { name: 60, greeting: 500, guidance: 4000 } as const;

function Assistant({ api }: { api: Api }) {
  const [name, setName] = useState("");
  const [greeting, setGreeting] = useState("");
  const [guidance, setGuidance] = useState("");
  const [note, setNote] = useState<string>();
  const [error, setError] = useState<string>();
  // Until the saved values arrive the fields stay locked, or what the agent typed first would
  // be overwritten by them.
  const [loaded, setLoaded] = useState(false);
  const show = (p: Project) => {
    setLoaded(true);
    setName(p.assistant_name);
    setGreeting(p.assistant_greeting);
    setGuidance(p.assistant_guidance);
  };
  useEffect(() => {
    api.project().then(show, (e) => setError((e as Error).message));
  }, []);
  const save = async (e: Event) => {
    e.preventDefault();
    try {
      show(await api.setAssistant({ assistant_name: name, assistant_greeting: greeting, assistant_guidance: guidance }));
      setNote("Saved.");
      setError(undefined);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  // Counted in code points, as the server counts characters.
  const count = (text: string, max: number, id: string) => {
    const n = [...text].length;
    return (
      <span id={id} class={n > max ? "counter over" : "counter"} aria-live="polite">
        {n} / {max}
      </span>
    );
  };
  const over = [...name].length > LIMITS.name || [...greeting].length > LIMITS.greeting || [...guidance].length > LIMITS.guidance;
  return (
    <section class="card" aria-labelledby="assistant-title">
      <h2 id="assistant-title">Assistant</h2>
      <p class="hint">How the assistant introduces itself in the widget, and your instructions to it. Leave a field empty for the default.</p>
      <form onSubmit={save}>
        <fieldset class="plain" disabled={!loaded}>
          <label>
            Name {count(name, LIMITS.name, "assistant-name-count")}
            <input value={name} placeholder="Ava" aria-describedby="assistant-name-count" onInput={(e) => setName((e.target as HTMLInputElement).value)} />
          </label>
          <label>
            Greeting {count(greeting, LIMITS.greeting, "assistant-greeting-count")}
            <textarea
              rows={2}
              value={greeting}
              placeholder="Hi, I'm Ava from Acme. How can I help?"
              aria-describedby="assistant-greeting-count"
              onInput={(e) => setGreeting((e.target as HTMLTextAreaElement).value)}
            />
          </label>
          <label>
            Guidance <span class="hint">(tone, what never to promise; visitors never see it)</span>{" "}
            {count(guidance, LIMITS.guidance, "assistant-guidance-count")}
            <textarea
              rows={6}
              value={guidance}
              placeholder="Be warm and brief. Never promise refunds or delivery dates."
              aria-describedby="assistant-guidance-count"
              onInput={(e) => setGuidance((e.target as HTMLTextAreaElement).value)}
            />
          </label>
        </fieldset>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        {note && !error && <p role="status">{note}</p>}
        <button type="submit" disabled={over}>
          Save assistant
        </button>
      </form>
    </section>
  );
}

/** Whether the widget asks visitors to rate a resolved ticket; saved as soon as it changes. */
function Satisfaction({ api }: { api: Api }) {
  // Null until the saved value arrives, so the box never shows a guess.
  const [enabled, setEnabled] = useState<boolean | null>(null);
  const [note, setNote] = useState<string>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    api.project().then((p) => setEnabled(p.csat_enabled), (e) => setError((e as Error).message));
  }, []);
  const change = async (on: boolean) => {
    try {
      const p = await api.setCsat(on);
      setEnabled(p.csat_enabled);
      setNote(p.csat_enabled ? "Visitors are asked to rate resolved tickets." : "Visitors are not asked.");
      setError(undefined);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return (
    <section class="card" aria-labelledby="csat-title">
      <h2 id="csat-title">Satisfaction survey</h2>
      <p class="hint">When a ticket is resolved, the widget asks the visitor once for a rating from 1 to 5 and an optional comment.</p>
      <label class="check">
        <input type="checkbox" checked={enabled ?? false} disabled={enabled === null} onChange={(e) => void change((e.target as HTMLInputElement).checked)} /> Ask visitors to
        rate resolved tickets
      </label>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {note && !error && <p role="status">{note}</p>}
    </section>
  );
}

type Access = Project["ticket_access"];

const ACCESS_NOTES: Record<Access, string> = {
  slug: "Anyone who has a ticket's link can read and answer it.",
  session: "Only the visitor who opened a ticket (and agents) can read and answer it.",
};

/** Who may read and write a ticket on the public endpoints; saved as soon as it changes. */
function TicketAccess({ api }: { api: Api }) {
  const [access, setAccess] = useState<Access | null>(null);
  const [note, setNote] = useState<string>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    api.project().then((p) => setAccess(p.ticket_access), (e) => setError((e as Error).message));
  }, []);
  const change = async (next: Access) => {
    try {
      const p = await api.setTicketAccess(next);
      setAccess(p.ticket_access);
      setNote(`Saved. ${ACCESS_NOTES[p.ticket_access]}`);
      setError(undefined);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return (
    <section class="card" aria-labelledby="access-title">
      <h2 id="access-title">Ticket access</h2>
      <p class="hint">
        Who can open a ticket from outside the inbox. With “Only its visitor”, a guessed or leaked ticket link shows nothing: the widget that opened the ticket keeps
        working, and a verified visitor sees their tickets on any device.
      </p>
      <label>
        Visitors reach a ticket by{" "}
        <select value={access ?? ""} disabled={access === null} onChange={(e) => void change((e.target as HTMLSelectElement).value as Access)}>
          <option value="slug">its link (slug)</option>
          <option value="session">only its visitor (session)</option>
        </select>
      </label>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {note && !error && <p role="status">{note}</p>}
    </section>
  );
}

/** How long finished tickets are kept before the server erases them. */
function Retention({ api }: { api: Api }) {
  // Null until the saved value arrives; "" keeps tickets for good.
  const [days, setDays] = useState<string | null>(null);
  const [note, setNote] = useState<string>();
  const [error, setError] = useState<string>();
  const shown = (p: Project) => (p.retention.tickets_after_days == null ? "" : String(p.retention.tickets_after_days));
  useEffect(() => {
    api.project().then((p) => setDays(shown(p)), (e) => setError((e as Error).message));
  }, []);
  const save = async (e: Event) => {
    e.preventDefault();
    if (days === null) return;
    try {
      const p = await api.setRetention(days.trim() === "" ? null : Number(days));
      setDays(shown(p));
      const kept = p.retention.tickets_after_days;
      setNote(kept == null ? "Saved. Tickets are kept for good." : `Saved. Tickets resolved or closed for ${kept} days are erased.`);
      setError(undefined);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return (
    <section class="card" aria-labelledby="retention-title">
      <h2 id="retention-title">Data retention</h2>
      <p class="hint">
        Tickets resolved or closed for longer than this, with no change since, are erased for good with their messages, notes and assistant transcript, as an
        admin’s “Erase” would. Leave it empty to keep every ticket.
      </p>
      <form onSubmit={save}>
        <label>
          Erase finished tickets after{" "}
          <input type="number" min={1} max={3650} inputMode="numeric" value={days ?? ""} disabled={days === null} onInput={(e) => setDays((e.target as HTMLInputElement).value)} />{" "}
          days
        </label>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        {note && !error && <p role="status">{note}</p>}
        <button type="submit" disabled={days === null}>
          Save retention
        </button>
      </form>
    </section>
  );
}

function Origins({ api }: { api: Api }) {
  // Null until the saved list arrives: saving before then would replace it with what was typed.
  const [text, setText] = useState<string | null>(null);
  const [note, setNote] = useState<string>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    api.project().then((p) => setText(p.allowed_origins.join("\n")), (e) => setError((e as Error).message));
  }, []);
  const save = async (e: Event) => {
    e.preventDefault();
    try {
      if (text === null) return;
      const origins = text.split(/\s+/).map((o) => o.trim()).filter(Boolean);
      const p = await api.setOrigins(origins);
      setText(p.allowed_origins.join("\n"));
      setNote("Saved.");
      setError(undefined);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return (
    <section class="card" aria-labelledby="origins-title">
      <h2 id="origins-title">Allowed origins</h2>
      <p class="hint">The sites the widget may run on, one per line, like https://www.example.com.</p>
      <form onSubmit={save}>
        <textarea rows={5} value={text ?? ""} disabled={text === null} aria-label="Allowed origins" onInput={(e) => setText((e.target as HTMLTextAreaElement).value)} />
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        {note && !error && <p role="status">{note}</p>}
        <button type="submit" disabled={text === null}>
          Save origins
        </button>
      </form>
    </section>
  );
}

function Webhooks({ api }: { api: Api }) {
  const [hooks, setHooks] = useState<Webhook[]>([]);
  const [url, setUrl] = useState("");
  const [events, setEvents] = useState<WebhookEvent[]>(EVENTS);
  const [secret, setSecret] = useState<string | null>();
  const [open, setOpen] = useState<string>();
  const [error, setError] = useState<string>();
  const load = async () => {
    try {
      setHooks((await api.webhooks()).webhooks);
    } catch (e) {
      setError((e as Error).message);
    }
  };
  useEffect(() => {
    void load();
  }, []);
  const add = async (e: Event) => {
    e.preventDefault();
    try {
      const hook = await api.addWebhook(url.trim(), events);
      setSecret(hook.secret);
      setUrl("");
      setError(undefined);
      await load();
    } catch (err) {
      setError((err as Error).message);
    }
  };
  const change = async (hook: Webhook, enabled: boolean) => {
    try {
      await api.updateWebhook(hook.id, { enabled });
      await load();
    } catch (err) {
      setError((err as Error).message);
    }
  };
  const remove = async (hook: Webhook) => {
    if (!confirm(`Delete the webhook to ${hook.url}?`)) return;
    await api.deleteWebhook(hook.id).catch((err) => setError((err as Error).message));
    await load();
  };
  return (
    <section class="card" aria-labelledby="hooks-title">
      <h2 id="hooks-title">Webhooks</h2>
      <p class="hint">Signed with the Standard Webhooks scheme; failed deliveries are retried for about a day.</p>
      <form class="hook-form" onSubmit={add}>
        <label>
          Endpoint URL
          <input type="url" required placeholder="https://example.com/fleety" value={url} onInput={(e) => setUrl((e.target as HTMLInputElement).value)} />
        </label>
        <fieldset>
          <legend>Events</legend>
          {EVENTS.map((ev) => (
            <label key={ev} class="check">
              <input
                type="checkbox"
                checked={events.includes(ev)}
                onChange={(e) =>
                  setEvents((known) => ((e.target as HTMLInputElement).checked ? [...known, ev] : known.filter((k) => k !== ev)))
                }
              />{" "}
              {ev}
            </label>
          ))}
        </fieldset>
        <button type="submit" disabled={events.length === 0}>
          Add endpoint
        </button>
      </form>
      {secret && (
        <p class="secret" role="status">
          Signing secret, shown once: <code>{secret}</code>
        </p>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <ul class="hooks">
        {hooks.map((h) => (
          <li key={h.id}>
            <div class="hook-row">
              <span class="url">{h.url}</span>
              <span class={h.enabled ? "status open" : "status closed"}>{h.enabled ? "enabled" : "disabled"}</span>
              <button type="button" onClick={() => void change(h, !h.enabled)}>
                {h.enabled ? "Disable" : "Enable"}
              </button>
              <button type="button" onClick={() => setOpen(open === h.id ? undefined : h.id)} aria-expanded={open === h.id}>
                Deliveries
              </button>
              <button type="button" class="danger" onClick={() => void remove(h)}>
                Delete
              </button>
            </div>
            <p class="sub">
              {h.events.join(", ")}
              {h.disabled_reason ? ` · ${h.disabled_reason}` : ""}
            </p>
            {open === h.id && <Deliveries api={api} hook={h} />}
          </li>
        ))}
      </ul>
    </section>
  );
}

function Deliveries({ api, hook }: { api: Api; hook: Webhook }) {
  const [rows, setRows] = useState<Delivery[]>([]);
  const [error, setError] = useState<string>();
  const load = () =>
    api.deliveries(hook.id).then(
      (d) => {
        setRows(d.deliveries);
        setError(undefined);
      },
      (e) => setError((e as Error).message),
    );
  useEffect(() => {
    void load();
  }, [hook.id]);
  const replay = (d: Delivery) =>
    api.replay(hook.id, d.id).then(load, (e) => setError((e as Error).message));
  return (
    <div class="log">
      <div class="log-bar">
        <button type="button" onClick={() => void load()}>
          Refresh
        </button>
        {error && (
          <span class="error" role="alert">
            {error}
          </span>
        )}
      </div>
      {rows.length === 0 ? (
        <p class="hint">Nothing sent yet.</p>
      ) : (
        <table class="deliveries">
          <caption class="visually-hidden">Deliveries to {hook.url}</caption>
          <thead>
            <tr>
              <th>When</th>
              <th>Event</th>
              <th>Status</th>
              <th>Attempts</th>
              <th>Last answer</th>
              <th>
                <span class="visually-hidden">Replay</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {rows.map((d) => (
              <tr key={d.id} class={`delivery ${d.status}`}>
                <td>
                  <time dateTime={d.created_at}>{new Date(d.created_at).toLocaleString()}</time>
                </td>
                <td>{d.event_type}</td>
                <td>
                  {d.status}
                  {d.status === "pending" && d.next_attempt_at ? ` (next ${new Date(d.next_attempt_at).toLocaleTimeString()})` : ""}
                </td>
                <td>{d.attempts}</td>
                <td>{d.last_status ?? d.last_error ?? "—"}</td>
                <td>
                  <button type="button" onClick={() => void replay(d)} aria-label={`Replay ${d.event_type} ${d.id}`}>
                    Replay
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

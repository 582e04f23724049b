// The email outbox, for owners and admins: the Settings card says plainly when the server
// sends no email (no SMTP configured), and otherwise lists the emails it sent or owes, newest
// first, with what became of each (a failed one's reason in general words); a ticket's side
// panel shows that ticket's emails. Never a body: the API does not hand it out.

import { useEffect, useState } from "preact/hooks";

import type { Api, OutboxEmail } from "./api";

const PAGE = 20;

const KINDS: Record<OutboxEmail["kind"], string> = {
  invitation: "Invitation",
  password_reset: "Password reset",
  visitor_reply: "Replies to the visitor",
  agent_new_ticket: "New ticket, to an agent",
  agent_assigned: "Assigned, to an agent",
  agent_visitor_reply: "Visitor's reply, to an agent",
};

const STATUS: Record<OutboxEmail["status"], string> = {
  pending: "Waiting",
  sent: "Sent",
  failed: "Failed",
  given_up: "Given up",
};

/** Where an email stands, in words: when it went, or when it is tried next and why not yet. */
function state(e: OutboxEmail): string {
  if (e.status === "sent" && e.sent_at) return `Sent ${new Date(e.sent_at).toLocaleString()}`;
  const why = e.last_error ? `: ${e.last_error}` : "";
  if (e.status === "pending") {
    const next = e.next_attempt_at ? `, next try ${new Date(e.next_attempt_at).toLocaleString()}` : "";
    return e.attempts === 0 ? `Not sent yet${next}` : `Not sent after ${e.attempts} ${e.attempts === 1 ? "try" : "tries"}${next}${why}`;
  }
  if (e.status === "failed") return `Refused${why}`;
  return `Given up after ${e.attempts} tries${why}`;
}

function Row({ e }: { e: OutboxEmail }) {
  return (
    <tr>
      <td class="time">
        <time dateTime={e.created_at}>{new Date(e.created_at).toLocaleString()}</time>
      </td>
      <td>
        <span class="target">{e.subject}</span>
        <span class="change">
          {KINDS[e.kind]} to {e.to}
          {e.ticket && ` · ticket ${e.ticket}`}
        </span>
      </td>
      <td>
        <span class={`mail ${e.status}`}>{STATUS[e.status]}</span>
        <span class="change">{state(e)}</span>
      </td>
    </tr>
  );
}

/** The outbox's emails, newest first, a page at a time; `ticket` keeps one ticket's. */
function useEmails(api: Api, ticket?: string) {
  const [emails, setEmails] = useState<OutboxEmail[]>();
  const [enabled, setEnabled] = useState<boolean>();
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const load = async (cursor?: string) => {
    setBusy(true);
    try {
      const page = await api.emails({ limit: PAGE, ...(ticket && { ticket }), ...(cursor && { cursor }) });
      setEnabled(page.email_enabled);
      setEmails((shown) => (cursor ? [...(shown ?? []), ...page.emails] : page.emails));
      setNext(page.next ?? null);
      setError(undefined);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  useEffect(() => {
    void load();
  }, [ticket]);
  return { emails, enabled, next, error, busy, load };
}

/** The Settings card: whether this server emails at all, and its recent emails. */
export function EmailOutbox({ api }: { api: Api }) {
  const { emails, enabled, next, error, busy, load } = useEmails(api);
  return (
    <section class="card" aria-labelledby="outbox-title">
      <h2 id="outbox-title">Email</h2>
      {enabled === false && (
        <p class="notice" role="status">
          This server sends no email: SMTP is not configured. Invitations and password resets are links you hand on yourself, and visitors and agents get no email.
        </p>
      )}
      {enabled && <p class="hint">What this project emails (invitations, password resets, replies to visitors, agents' ticket emails) and what became of each. Emails are kept 30 days on ScyllaDB.</p>}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {!emails ? (
        !error && <p class="empty">Loading…</p>
      ) : emails.length === 0 ? (
        <p class="empty">No email {enabled === false ? "is waiting" : "yet"}.</p>
      ) : (
        <table class="members audit-log outbox">
          <caption class="visually-hidden">Emails, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Made</th>
              <th scope="col">Email</th>
              <th scope="col">Status</th>
            </tr>
          </thead>
          <tbody>
            {emails.map((e) => (
              <Row key={e.id} e={e} />
            ))}
          </tbody>
        </table>
      )}
      <div class="log-bar">
        <button type="button" disabled={busy} onClick={() => load()}>
          Reload emails
        </button>
        {next && (
          <button type="button" disabled={busy} onClick={() => load(next)}>
            {busy ? "Loading…" : "Older emails"}
          </button>
        )}
      </div>
    </section>
  );
}

/** A ticket's emails, beside its thread; nothing when it has none. */
export function TicketEmails({ api, slug }: { api: Api; slug: string }) {
  const { emails, enabled } = useEmails(api, slug);
  if (!emails || emails.length === 0) return null;
  return (
    <aside class="contact-card" aria-label="Emails about this ticket">
      <p>
        <strong>Emails</strong>
        {enabled === false && <span class="hint"> · this server sends no email</span>}
      </p>
      <ul class="ticket-emails">
        {emails.map((e) => (
          <li key={e.id}>
            <span class={`mail ${e.status}`}>{STATUS[e.status]}</span> {KINDS[e.kind]} to {e.to}
            <br />
            <span class="hint">{state(e)}</span>
          </li>
        ))}
      </ul>
    </aside>
  );
}

// The audit trail, for owners and admins: who did what to the project, when and from where,
// newest first, filtered by member, action and date, a page at a time ("Older" follows the
// API's cursor). Records never hold a message's or a note's text, only what changed.

import { useEffect, useState } from "preact/hooks";

import type { Api, AuditQuery, AuditRecord, Member } from "./api";

/** The actions a filter offers: each kind as a whole, then the ones worth finding alone. */
const ACTIONS: [string, string][] = [
  ["", "Any action"],
  ["ticket.*", "Tickets: any"],
  ["ticket.status_changed", "Ticket status changed"],
  ["ticket.assigned", "Ticket assigned"],
  ["ticket.tags_changed", "Ticket tags changed"],
  ["ticket.note_added", "Internal note added"],
  ["ticket.replied", "Agent replied"],
  ["article.*", "Knowledge base: any"],
  ["member.*", "Members and sign-ins: any"],
  ["member.signed_in", "Signed in"],
  ["member.sign_in_failed", "Sign-in refused"],
  ["project.changed", "Project settings changed"],
  ["webhook.*", "Webhooks: any"],
  ["canned_reply.*", "Canned replies: any"],
];

const PAGE = 50;

export function Audit({ api }: { api: Api }) {
  const [members, setMembers] = useState<Member[]>([]);
  const [member, setMember] = useState("");
  const [action, setAction] = useState("");
  const [since, setSince] = useState("");
  const [records, setRecords] = useState<AuditRecord[]>();
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    api.members().then(
      (list) => setMembers(list.members),
      () => setMembers([]),
    );
  }, []);

  const query = (cursor?: string): AuditQuery => ({
    limit: PAGE,
    ...(member && { member }),
    ...(action && { action }),
    // The day picked, from its start in the browser's time zone.
    ...(since && { since: new Date(`${since}T00:00:00`).toISOString() }),
    ...(cursor && { cursor }),
  });

  const load = async (cursor?: string) => {
    setBusy(true);
    try {
      const page = await api.audit(query(cursor));
      setRecords((shown) => (cursor ? [...(shown ?? []), ...page.records] : page.records));
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
  }, [member, action, since]);

  return (
    <div class="settings">
      <section class="card audit" aria-labelledby="audit-title">
        <h2 id="audit-title">Audit trail</h2>
        <p class="hint">Who did what to this project, when and from where. Message and note texts are never kept here.</p>
        <form class="audit-filters" role="search" aria-label="Filter the audit trail" onSubmit={(e) => e.preventDefault()}>
          <div class="field">
            <label for="audit-member">Member</label>
            <select id="audit-member" value={member} onChange={(e) => setMember((e.target as HTMLSelectElement).value)}>
              <option value="">Anyone</option>
              {members.map((m) => (
                <option value={m.id} key={m.id}>
                  {m.name}
                </option>
              ))}
            </select>
          </div>
          <div class="field">
            <label for="audit-action">Action</label>
            <select id="audit-action" value={action} onChange={(e) => setAction((e.target as HTMLSelectElement).value)}>
              {ACTIONS.map(([value, label]) => (
                <option value={value} key={value}>
                  {label}
                </option>
              ))}
            </select>
          </div>
          <div class="field">
            <label for="audit-since">Since</label>
            <input id="audit-since" type="date" value={since} onChange={(e) => setSince((e.target as HTMLInputElement).value)} />
          </div>
        </form>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        {!records ? (
          <p class="empty">Loading…</p>
        ) : records.length === 0 && !next ? (
          <p class="empty">Nothing recorded{member || action || since ? " that matches" : " yet"}.</p>
        ) : (
          <table class="members audit-log">
            <caption class="visually-hidden">Audit records, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Member</th>
                <th scope="col">Action</th>
                <th scope="col">What changed</th>
                <th scope="col">IP</th>
              </tr>
            </thead>
            <tbody>
              {records.map((r) => (
                <tr key={r.id}>
                  <td class="time">
                    <time dateTime={r.at}>{new Date(r.at).toLocaleString()}</time>
                  </td>
                  <td>{actor(r.actor)}</td>
                  <td>
                    <code>{r.action}</code>
                  </td>
                  <td>
                    {r.target && <span class="target">{target(r.target)}</span>}
                    {changes(r.changes).map((line) => (
                      <span class="change" key={line}>
                        {line}
                      </span>
                    ))}
                  </td>
                  <td class="ip">{r.ip ?? "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {next && (
          <div class="log-bar">
            <button type="button" disabled={busy} onClick={() => load(next)}>
              {busy ? "Loading…" : "Older"}
            </button>
          </div>
        )}
      </section>
    </div>
  );
}

function actor(a: AuditRecord["actor"]): string {
  switch (a.kind) {
    case "member":
      return a.token ? `${a.name} (API token)` : a.name;
    case "admin_key":
      return "Admin key";
    case "operator":
      return "Operator";
    case "retention":
      return "Retention (automatic)";
    default:
      return "Someone not signed in";
  }
}

function target(t: NonNullable<AuditRecord["target"]>): string {
  const kind = t.kind.replace("_", " ");
  return t.name ? `${kind} “${t.name}”` : `${kind} ${t.id}`;
}

function shown(value: unknown): string {
  if (value === null || value === undefined) return "nobody";
  if (Array.isArray(value)) return value.length ? value.map(shown).join(", ") : "none";
  return String(value);
}

/** Each change as one line: `status: open → pending`, or a detail as `note: <id>`. A member's
 * id beside their name says nothing more to a reader. */
function changes(c: AuditRecord["changes"]): string[] {
  const entries = Object.entries(c).filter(([field]) => !(field === "assignee_id" && "assignee" in c));
  return entries.map(([field, value]) => {
    const name = field.replace("_", " ");
    if (value && typeof value === "object" && !Array.isArray(value) && "before" in value && "after" in value) {
      const { before, after } = value as { before: unknown; after: unknown };
      return `${name}: ${shown(before)} → ${shown(after)}`;
    }
    return `${name}: ${shown(value)}`;
  });
}

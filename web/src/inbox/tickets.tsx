// The ticket list (views Mine, Unassigned and All, filters by status and assignee, the
// server's search of titles, messages and notes as the agent types, a tag, paging, live, each
// ticket's last message and
// unread count, keyboard shortcuts) and the open ticket: its
// history (newest page first, older pages as the agent scrolls up), the chat that led to it
// (once: its turns are the ticket's first messages), internal notes, the timeline of status,
// assignment and tag changes, and the reply box.

import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

import { Markdown, plainText } from "../shared/markdown";
import type { Api, Assignee, ContactDetail, ListedTicket, Message, Note, Ticket, TicketStatus, TicketSummary, TimelineEntry, Turn } from "./api";
import type { Listener } from "./app";
import { useCannedPicker } from "./canned";
import type { Feed } from "./feed";
import { TicketEmails } from "./outbox";

const STATUSES = ["open", "pending", "resolved", "closed"];
/** How long the agent pauses typing before the search runs. */
const SEARCH_PAUSE_MS = 300;

/** Messages per page of a ticket's history. */
const PAGE = 50;

interface Props {
  api: Api;
  feed: Feed;
  subscribe: (l: Listener) => () => void;
  resumes: number;
  onOpen: (slug: string) => void;
  /** A ticket to open at once: an email's link named it. */
  initial?: string;
}

type Listed = ListedTicket;

/** Whose tickets the list shows: "me", "none" (unassigned), a member's id, or "" (all). */
type Whose = string;

/** Whether a ticket assigned as `a` belongs in the list of `whose`, for `me` (a member's id). */
function belongs(whose: Whose, a: { assignee: string | null; assignee_member: Assignee | null }, me: string | undefined): boolean {
  if (!whose) return true;
  if (whose === "none") return a.assignee === null;
  const id = whose === "me" ? me : whose;
  return a.assignee_member?.id === id;
}

/** The members tickets may be assigned to, loaded once per inbox. */
function useAssignees(api: Api): Assignee[] {
  const [assignees, setAssignees] = useState<Assignee[]>([]);
  useEffect(() => {
    api
      .assignees()
      .then((list) => setAssignees(list.assignees))
      .catch(() => undefined);
  }, [api]);
  return assignees;
}

/** When a message was sent: the time today, the date before. */
function when(iso: string): string {
  const at = new Date(iso);
  const today = new Date().toDateString() === at.toDateString();
  return today ? at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : at.toLocaleDateString([], { day: "numeric", month: "short" });
}

/** A message's start for the list, as the server makes its previews: plain text, not Markdown. */
function preview(content: string): string {
  const folded = plainText(content).split(/\s+/).filter(Boolean).join(" ");
  return folded.length > 140 ? `${folded.slice(0, 140)}…` : folded;
}

/** The visitor as the agents know them: their name, or else their email. */
function visitorName(v: NonNullable<TicketSummary["visitor"]>): string {
  return v.name ?? v.email ?? "";
}

/** The visitor in a ticket's header: name and email, the email marked when the visitor typed it
 * into the widget's "get replies by email" field, which nobody checked. */
function visitorLine(v: NonNullable<TicketSummary["visitor"]>): string {
  const mark = v.email_unverified ? " (unverified)" : "";
  if (!v.email) return v.name ?? "";
  return v.name ? `${v.name} <${v.email}>${mark}` : `${v.email}${mark}`;
}

/** Where a key press belongs to what the agent is typing, not to the list's shortcuts. */
function typing(target: EventTarget | null): boolean {
  if (!(target instanceof HTMLElement)) return false;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

const SHORTCUTS: [string, string][] = [
  ["j", "Next ticket"],
  ["k", "Previous ticket"],
  ["Enter", "Open the ticket"],
  ["e", "Resolve the ticket"],
  ["?", "Show this help"],
  ["Esc", "Close this help"],
];

export function Tickets({ api, feed, subscribe, resumes, onOpen, initial }: Props) {
  const [status, setStatus] = useState("");
  const [query, setQuery] = useState("");
  const [applied, setApplied] = useState("");
  const [tag, setTag] = useState("");
  // The list opens on All, as it always has; Mine is there for a signed-in member only.
  const [whose, setWhose] = useState<Whose>("");
  const me = api.creds.memberId;
  const assignees = useAssignees(api);
  const [tickets, setTickets] = useState<Listed[]>([]);
  const [cursor, setCursor] = useState<string | null | undefined>(null);
  const [selected, setSelected] = useState<string>();
  // The ticket j and k move to; Enter opens it and e resolves it.
  const [focused, setFocused] = useState<string>();
  const [help, setHelp] = useState(false);
  const [error, setError] = useState<string>();
  const list = useRef<HTMLUListElement>(null);

  const load = async (more: boolean) => {
    try {
      const page = await api.tickets(status, applied, more ? (cursor ?? undefined) : undefined, tag, whose);
      setTickets((known) => (more ? [...known, ...page.tickets] : page.tickets));
      setCursor(page.next_cursor);
      setError(undefined);
    } catch (e) {
      setError((e as Error).message);
    }
  };
  useEffect(() => {
    void load(false);
  }, [status, applied, tag, whose, resumes]);
  // The search runs once the agent pauses typing (Enter runs it at once), so each key press
  // does not cost a request.
  useEffect(() => {
    if (query.trim() === applied.trim()) return;
    const timer = setTimeout(() => setApplied(query), SEARCH_PAUSE_MS);
    return () => clearTimeout(timer);
  }, [query]);
  // While searching, what the feed announces may or may not match: the server says, once a
  // burst of events has passed.
  const research = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const searchAgain = () => {
    clearTimeout(research.current);
    research.current = setTimeout(() => void load(false), SEARCH_PAUSE_MS);
  };
  useEffect(() => () => clearTimeout(research.current), []);

  useEffect(() => {
    if (initial) open(initial);
  }, [initial]);
  const open = (slug: string) => {
    setSelected(slug);
    setFocused(slug);
    setTickets((known) => known.map((k) => (k.slug === slug ? { ...k, unread_count: 0 } : k)));
    onOpen(slug);
  };
  const resolve = async (slug: string) => {
    try {
      const t = await api.setStatus(slug, "resolved");
      setTickets((known) => known.map((k) => (k.slug === slug ? { ...k, ...t } : k)));
      setError(undefined);
    } catch (e) {
      setError((e as Error).message);
    }
  };

  // The shortcuts live on the document, so they work wherever the focus is, except while typing.
  const state = useRef({ tickets, focused, selected, help });
  state.current = { tickets, focused, selected, help };
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const { tickets, focused, selected, help } = state.current;
      if (help) {
        if (e.key === "Escape" || e.key === "?") {
          e.preventDefault();
          setHelp(false);
        }
        return;
      }
      if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
      const at = tickets.findIndex((t) => t.slug === (focused ?? selected));
      const move = (to: number) => {
        const t = tickets[Math.max(0, Math.min(tickets.length - 1, to))];
        if (!t) return;
        setFocused(t.slug);
        list.current?.querySelector<HTMLButtonElement>(`[data-slug="${t.slug}"]`)?.focus();
      };
      if (e.key === "j") move(at + 1);
      else if (e.key === "k") move(at < 0 ? 0 : at - 1);
      else if (e.key === "?") setHelp(true);
      else if (e.key === "e" && at >= 0) void resolve(tickets[at].slug);
      // A focused button opens on Enter by itself; elsewhere (the page) Enter opens the ticket.
      else if (e.key === "Enter" && at >= 0 && !(e.target instanceof HTMLButtonElement) && !(e.target instanceof HTMLAnchorElement)) open(tickets[at].slug);
      else return;
      e.preventDefault();
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, []);

  // New tickets and status changes appear without a reload.
  useEffect(
    () =>
      subscribe((event) => {
        const slug = event.ticket;
        if (!slug) return;
        if (event.type === "ticket_created") {
          const t = event.payload;
          if (applied.trim()) return searchAgain();
          const wanted = (!status || t.status === status) && (!tag || t.tags.includes(tag)) && belongs(whose, t, me);
          if (!wanted) return;
          setTickets((known) => [{ ...t, last_message: null, unread_count: 0 }, ...known.filter((k) => k.slug !== t.slug)]);
          // A ticket from the assistant arrives with its chat as messages, which the feed does
          // not announce one by one: read them once for the list's preview and count.
          void api
            .ticket(t.slug)
            .then((full) => {
              const last = full.messages[full.messages.length - 1];
              const unseen = full.messages.filter((m) => m.author === "user" && !m.read_by.includes("admin")).length;
              setTickets((known) =>
                known.map((k) =>
                  k.slug === t.slug && !k.last_message && last
                    ? { ...k, last_message: { id: last.id, author: last.author, preview: preview(last.content), timestamp: last.timestamp }, unread_count: k.unread_count + unseen }
                    : k,
                ),
              );
            })
            .catch(() => undefined);
        } else if (event.type === "status_change") {
          setTickets((known) => known.map((k) => (k.slug === slug ? { ...k, status: String(event.payload.status) as TicketStatus } : k)));
        } else if (event.type === "assigned") {
          const assigned = { assignee: event.payload.assignee ?? null, assignee_member: event.payload.assignee_member ?? null };
          // A ticket assigned away from this view leaves it; one assigned into it shows at the next load.
          setTickets((known) => known.map((k) => (k.slug === slug ? { ...k, ...assigned } : k)).filter((k) => k.slug !== slug || belongs(whose, assigned, me)));
        } else if (event.type === "ticket_update" && "tags" in event.payload) {
          const tags = event.payload.tags;
          setTickets((known) => known.map((k) => (k.slug === slug ? { ...k, tags } : k)));
        } else if (event.type === "ticket_update" && "satisfaction" in event.payload) {
          const satisfaction = event.payload.satisfaction;
          setTickets((known) => known.map((k) => (k.slug === slug ? { ...k, satisfaction } : k)));
        } else if (event.type === "new_message") {
          // The ticket moves to the top of what the agent sees as active, with its new message.
          const m = event.payload as unknown as Message;
          if (applied.trim() && !state.current.tickets.some((k) => k.slug === slug)) return searchAgain();
          setTickets((known) => {
            const t = known.find((k) => k.slug === slug);
            if (!t) return known;
            const counted = m.author === "user" && (slug !== state.current.selected || document.hidden);
            const moved: Listed = {
              ...t,
              last_message: { id: m.id, author: m.author, preview: preview(m.content), timestamp: m.timestamp },
              unread_count: t.unread_count + (counted ? 1 : 0),
            };
            return [moved, ...known.filter((k) => k.slug !== slug)];
          });
        }
      }),
    [status, applied, tag, whose],
  );

  return (
    <div class="tickets">
      <section class="list" aria-label="Tickets">
        <form
          class="filters"
          role="search"
          onSubmit={(e) => {
            e.preventDefault();
            setApplied(query);
          }}
        >
          <label class="visually-hidden" for="status-filter">
            Status
          </label>
          <select id="status-filter" value={status} onChange={(e) => setStatus((e.target as HTMLSelectElement).value)}>
            <option value="">All statuses</option>
            {STATUSES.map((s) => (
              <option value={s} key={s}>
                {s}
              </option>
            ))}
          </select>
          <input
            type="search"
            placeholder="Search tickets"
            aria-label="Search tickets"
            value={query}
            onInput={(e) => setQuery((e.target as HTMLInputElement).value)}
          />
          <button type="button" class="keys" aria-label="Keyboard shortcuts" title="Keyboard shortcuts (?)" onClick={() => setHelp(true)}>
            ?
          </button>
        </form>
        <div class="views">
          <div class="view-tabs" role="group" aria-label="Whose tickets">
            {(
              [
                ["me", "Mine"],
                ["none", "Unassigned"],
                ["", "All"],
              ] as const
            )
              .filter(([v]) => v !== "me" || me)
              .map(([v, label]) => (
                <button type="button" key={label} aria-pressed={whose === v} onClick={() => setWhose(v)}>
                  {label}
                </button>
              ))}
          </div>
          <label class="visually-hidden" for="assignee-filter">
            Assignee
          </label>
          <select id="assignee-filter" value={whose} onChange={(e) => setWhose((e.target as HTMLSelectElement).value)}>
            <option value="">Anyone</option>
            {me && <option value="me">Me</option>}
            <option value="none">Unassigned</option>
            {assignees
              .filter((a) => a.id !== me)
              .map((a) => (
                <option value={a.id} key={a.id}>
                  {a.name}
                </option>
              ))}
          </select>
        </div>
        {tag && (
          <p class="tag-filter">
            Tagged <span class="tag">{tag}</span>{" "}
            <button type="button" onClick={() => setTag("")}>
              Show all
            </button>
          </p>
        )}
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <ul ref={list}>
          {tickets.map((t) => (
            <li key={t.slug}>
              <button
                type="button"
                data-slug={t.slug}
                class={`ticket${selected === t.slug ? " selected" : ""}${focused === t.slug ? " focused" : ""}${t.unread_count > 0 ? " has-unread" : ""}`}
                aria-current={selected === t.slug ? "true" : undefined}
                onFocus={() => setFocused(t.slug)}
                onClick={() => open(t.slug)}
              >
                <span class="title">{t.title}</span>
                {t.last_message && (
                  <time class="when" dateTime={t.last_message.timestamp}>
                    {when(t.last_message.timestamp)}
                  </time>
                )}
                <span class="preview">
                  {t.last_message ? (
                    <>
                      {t.last_message.author === "admin" ? "You: " : t.last_message.author === "assistant" ? "Assistant: " : ""}
                      {t.last_message.preview}
                    </>
                  ) : (
                    <em>No messages yet</em>
                  )}
                </span>
                {t.unread_count > 0 && (
                  <span class="unread" aria-label={`${t.unread_count >= 100 ? "99+" : t.unread_count} unread`}>
                    {t.unread_count >= 100 ? "99+" : t.unread_count}
                  </span>
                )}
                <span class="sub">
                  <span class={`status ${t.status}`}>{t.status}</span>
                  {t.visitor ? (
                    <>
                      {" "}
                      <span class="visitor">{visitorName(t.visitor)}</span> ·
                    </>
                  ) : (
                    ""
                  )}{" "}
                  {t.slug}
                  {t.assignee ? ` · ${t.assignee}` : ""}
                </span>
                {t.satisfaction && <Rated score={t.satisfaction.score} />}
                {t.tags.length > 0 && (
                  <span class="tags">
                    {t.tags.map((name) => (
                      <span class="tag" key={name}>
                        {name}
                      </span>
                    ))}
                  </span>
                )}
              </button>
            </li>
          ))}
        </ul>
        {tickets.length === 0 && !error && <p class="empty">No tickets.</p>}
        {cursor && (
          <button type="button" class="more" onClick={() => void load(true)}>
            Load more
          </button>
        )}
      </section>
      {selected ? (
        <TicketView
          key={selected}
          api={api}
          feed={feed}
          slug={selected}
          subscribe={subscribe}
          resumes={resumes}
          onSeen={() => onOpen(selected)}
          onTag={setTag}
          assignees={assignees}
          onOpenTicket={open}
        />
      ) : (
        <section class="detail empty">Choose a ticket.</section>
      )}
      {help && (
        <div class="overlay" onClick={() => setHelp(false)}>
          <div class="help" role="dialog" aria-modal="true" aria-labelledby="keys-title" onClick={(e) => e.stopPropagation()}>
            <h2 id="keys-title">Keyboard shortcuts</h2>
            <dl>
              {SHORTCUTS.map(([key, what]) => (
                <div key={key}>
                  <dt>
                    <kbd>{key}</kbd>
                  </dt>
                  <dd>{what}</dd>
                </div>
              ))}
            </dl>
            <p class="hint">They do nothing while you type in a field.</p>
            <button type="button" autoFocus onClick={() => setHelp(false)}>
              Close
            </button>
          </div>
        </div>
      )}
    </div>
  );
}

interface ViewProps {
  api: Api;
  feed: Feed;
  slug: string;
  subscribe: (l: Listener) => () => void;
  resumes: number;
  onSeen: () => void;
  /** Shows only the tickets with this tag in the list. */
  onTag: (tag: string) => void;
  /** Whom the ticket may be assigned to. */
  assignees: Assignee[];
  /** Opens another ticket in the view (one of the contact's). */
  onOpenTicket: (slug: string) => void;
}

function TicketView({ api, feed, slug, subscribe, resumes, onSeen, onTag, assignees, onOpenTicket }: ViewProps) {
  const [ticket, setTicket] = useState<Ticket>();
  const [turns, setTurns] = useState<Turn[]>([]);
  const [notes, setNotes] = useState<Note[]>([]);
  const [entries, setEntries] = useState<TimelineEntry[]>([]);
  // Where the next older page starts; undefined once the oldest message is shown.
  const [older, setOlder] = useState<string>();
  const loadingOlder = useRef(false);
  // The thread's height from its bottom before older messages went in on top, to keep what
  // the agent was reading in place.
  const keep = useRef<number | undefined>(undefined);
  const lastShown = useRef<string | undefined>(undefined);
  const [draft, setDraft] = useState("");
  const [asNote, setAsNote] = useState(false);
  const [visitorTyping, setVisitorTyping] = useState(false);
  const [newTag, setNewTag] = useState("");
  const [error, setError] = useState<string>();
  const log = useRef<HTMLDivElement>(null);
  const typingTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const lastTyping = useRef(0);
  const canned = useCannedPicker({ api, id: `canned-${slug}`, enabled: !asNote, visitor: ticket?.visitor?.name ?? null, setDraft });

  const reload = async () => {
    try {
      const [t, chat, n, tl] = await Promise.all([api.ticketPage(slug, PAGE), api.chat(slug), api.notes(slug), api.timeline(slug)]);
      setTicket(t);
      setOlder(t.next_before ?? undefined);
      setTurns(chat.turns);
      setNotes(n.notes);
      setEntries(tl.entries);
      setError(undefined);
      void api.markRead(slug).catch(() => undefined);
      onSeen();
    } catch (e) {
      setError((e as Error).message);
    }
  };
  useEffect(() => {
    void reload();
  }, [slug, resumes]);

  const loadOlder = async () => {
    if (!older || loadingOlder.current || !log.current) return;
    loadingOlder.current = true;
    try {
      const page = await api.ticketPage(slug, PAGE, older);
      if (log.current) keep.current = log.current.scrollHeight - log.current.scrollTop;
      setTicket((t) => t && { ...t, messages: [...page.messages.filter((m) => !t.messages.some((x) => x.id === m.id)), ...t.messages] });
      setOlder(page.next_before ?? undefined);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      loadingOlder.current = false;
    }
  };
  const addEntries = (more: TimelineEntry[]) =>
    setEntries((known) => [...known, ...more.filter((e) => !known.some((k) => k.id === e.id))].sort((a, b) => Date.parse(a.created_at) - Date.parse(b.created_at)));
  useEffect(
    () =>
      subscribe((event) => {
        if (event.ticket !== slug) return;
        const p: Record<string, unknown> = event.payload;
        if (event.type === "new_message") {
          const m = p as unknown as Message;
          setTicket((t) => (t && !t.messages.some((x) => x.id === m.id) ? { ...t, messages: [...t.messages, m] } : t));
          if (m.author === "user") {
            setVisitorTyping(false);
            if (!document.hidden) {
              void api.markRead(slug).catch(() => undefined);
              onSeen();
            }
          }
        } else if (event.type === "status_change") {
          setTicket((t) => t && { ...t, status: String(p.status) as TicketStatus });
        } else if (event.type === "assigned") {
          setTicket((t) => t && { ...t, assignee: (p.assignee as string) ?? null, assignee_member: (p.assignee_member as Assignee | null) ?? null });
        } else if (event.type === "timeline_entry") {
          addEntries([p as unknown as TimelineEntry]);
        } else if (event.type === "note_added") {
          const n = p as unknown as Note;
          setNotes((known) => (known.some((x) => x.id === n.id) ? known : [...known, n]));
        } else if (event.type === "typing" && p.author === "user") {
          setVisitorTyping(true);
          clearTimeout(typingTimer.current);
          typingTimer.current = setTimeout(() => setVisitorTyping(false), 5000);
        } else if (event.type === "ticket_update" && p.satisfaction) {
          setTicket((t) => t && { ...t, satisfaction: p.satisfaction as Ticket["satisfaction"] });
        } else if (event.type === "ticket_update" && Array.isArray(p.tags)) {
          setTicket((t) => t && { ...t, tags: p.tags as string[] });
        } else if (event.type === "ticket_update" && p.reader === "user") {
          const upTo = String(p.last_read_message_id);
          setTicket((t) => {
            if (!t) return t;
            const index = t.messages.findIndex((m) => m.id === upTo);
            return {
              ...t,
              messages: t.messages.map((m, i) => (i <= index && !m.read_by.includes("user") ? { ...m, read_by: [...m.read_by, "user"] } : m)),
            };
          });
        }
      }),
    [slug],
  );

  // New items at the bottom scroll into view; an older page going in on top leaves the
  // agent where they were. A first page too short to scroll brings the next one at once.
  useLayoutEffect(() => {
    const el = log.current;
    if (!el || !ticket) return;
    if (keep.current !== undefined) {
      el.scrollTop = el.scrollHeight - keep.current;
      keep.current = undefined;
    } else {
      const last = shown[shown.length - 1]?.id;
      if (last !== lastShown.current) el.scrollTop = el.scrollHeight;
      lastShown.current = last;
    }
    if (older && el.scrollHeight <= el.clientHeight) void loadOlder();
  });

  const send = async (e: Event) => {
    e.preventDefault();
    const text = draft.trim();
    if (!text) return;
    try {
      if (asNote) {
        const note = await api.addNote(slug, text);
        setNotes((known) => (known.some((x) => x.id === note.id) ? known : [...known, note]));
      } else {
        const { data } = await api.reply(slug, text);
        setTicket((t) => (t && !t.messages.some((x) => x.id === data.id) ? { ...t, messages: [...t.messages, data] } : t));
      }
      setDraft("");
      setError(undefined);
    } catch (err) {
      setError((err as Error).message);
    }
  };

  const act = async (change: Promise<TicketSummary>) => {
    try {
      const t = await change;
      setTicket((known) => known && { ...known, ...t, messages: known.messages });
      // The feed brings the entry too; asking covers an agent whose feed is reconnecting.
      void api
        .timeline(slug)
        .then((tl) => addEntries(tl.entries))
        .catch(() => undefined);
    } catch (err) {
      setError((err as Error).message);
    }
  };

  const retag = (tags: string[]) => void act(api.setTags(slug, tags));
  const addTag = (e: Event) => {
    e.preventDefault();
    const name = newTag.trim();
    if (!name || !ticket) return;
    if (!ticket.tags.includes(name)) retag([...ticket.tags, name]);
    setNewTag("");
  };

  // The chat that led to the ticket is its first messages: its turns show only where they
  // are not (none, usually), once the oldest page is in.
  const said = new Set(ticket?.messages.map((m) => m.content));
  // The assistant's hand-off answer (the turn that opened the ticket) says only that.
  const unsaid = older ? [] : turns.filter((turn) => !said.has(turn.content) && !turn.ticket_slug);
  const ratings = new Map(turns.filter((turn) => turn.role === "assistant" && turn.feedback).map((turn) => [turn.content, turn.feedback]));
  // Notes and entries older than the oldest message shown wait for its page.
  const from = older && ticket?.messages.length ? Date.parse(ticket.messages[0].timestamp) : -Infinity;
  const shown = ticket ? merge(ticket.messages, notes, entries).filter((item) => item.at >= from) : [];

  if (!ticket) {
    return <section class="detail">{error ? <p class="error">{error}</p> : "Loading…"}</section>;
  }
  const me = api.creds.name;
  const memberId = api.creds.memberId;
  const mine = memberId ? ticket.assignee_member?.id === memberId : ticket.assignee === me && !ticket.assignee_member;
  const assignMe = () => (memberId ? api.assign(slug, memberId) : api.assignName(slug, me));
  return (
    <section class="detail" aria-label={`Ticket ${slug}`}>
      <header class="ticket-head">
        <div>
          <h1>{ticket.title}</h1>
          <p class="sub">
            {ticket.visitor ? `${visitorLine(ticket.visitor)} · ` : ""}
            {slug} · {ticket.source === "chat" ? "from the assistant" : "from the API"} · opened {new Date(ticket.created_at).toLocaleString()}
          </p>
        </div>
        <div class="actions">
          <label>
            Status{" "}
            <select value={ticket.status} onChange={(e) => void act(api.setStatus(slug, (e.target as HTMLSelectElement).value as TicketStatus))}>
              {STATUSES.map((s) => (
                <option value={s} key={s}>
                  {s}
                </option>
              ))}
            </select>
          </label>
          {mine ? (
            <button type="button" onClick={() => void act(api.assign(slug, null))}>
              Unassign me
            </button>
          ) : (
            <button type="button" onClick={() => void act(assignMe())}>
              Assign to me
            </button>
          )}
          <label>
            Assignee{" "}
            <select
              class="assignee-picker"
              value={ticket.assignee_member?.id ?? (ticket.assignee ? "typed" : "")}
              onChange={(e) => {
                const id = (e.target as HTMLSelectElement).value;
                if (id !== "typed") void act(api.assign(slug, id || null));
              }}
            >
              <option value="">Unassigned</option>
              {ticket.assignee && !ticket.assignee_member && <option value="typed">{ticket.assignee}</option>}
              {ticket.assignee_member && !assignees.some((a) => a.id === ticket.assignee_member?.id) && (
                <option value={ticket.assignee_member.id}>{ticket.assignee_member.name}</option>
              )}
              {assignees.map((a) => (
                <option value={a.id} key={a.id}>
                  {a.name}
                </option>
              ))}
            </select>
          </label>
        </div>
      </header>
      <form class="ticket-tags" aria-label="Tags" onSubmit={addTag}>
        {ticket.tags.map((name) => (
          <span class="tag" key={name}>
            <button type="button" class="tag-name" title={`Tickets tagged ${name}`} onClick={() => onTag(name)}>
              {name}
            </button>
            <button type="button" class="tag-remove" aria-label={`Remove tag ${name}`} onClick={() => retag(ticket.tags.filter((t) => t !== name))}>
              ×
            </button>
          </span>
        ))}
        <input
          aria-label="Add a tag"
          placeholder="Add a tag"
          maxLength={32}
          value={newTag}
          onInput={(e) => setNewTag((e.target as HTMLInputElement).value)}
        />
        <button type="submit" disabled={!newTag.trim()}>
          Tag
        </button>
      </form>
      {ticket.contact && <ContactCard api={api} contact={ticket.contact} slug={slug} onOpen={onOpenTicket} />}
      {api.role !== "agent" && <TicketEmails api={api} slug={slug} />}
      {ticket.satisfaction && (
        <p class="csat-given" aria-label="The visitor's rating">
          <Rated score={ticket.satisfaction.score} /> The visitor rated this conversation {ticket.satisfaction.score} of 5
          {ticket.satisfaction.comment ? <q>{ticket.satisfaction.comment}</q> : ""} · {new Date(ticket.satisfaction.rated_at).toLocaleString()}
        </p>
      )}
      {ticket.description && <p class="description">{ticket.description}</p>}
      {unsaid.length > 0 && (
        <details class="transcript">
          <summary>The chat with the assistant ({unsaid.length} turns)</summary>
          {unsaid.map((turn) => (
            <p key={turn.id} class={`turn ${turn.role}`}>
              <strong>{turn.role === "user" ? "Visitor" : "Assistant"}:</strong> {turn.content}
              {turn.feedback && (
                <span class={`feedback ${turn.feedback}`} title="The visitor's rating of this answer">
                  {turn.feedback === "up" ? " 👍 Helpful" : " 👎 Not helpful"}
                </span>
              )}
            </p>
          ))}
        </details>
      )}
      <div
        class="thread"
        role="log"
        aria-live="polite"
        aria-label="Conversation"
        tabIndex={0}
        ref={log}
        onScroll={(e) => {
          if ((e.target as HTMLElement).scrollTop < 120) void loadOlder();
        }}
      >
        {older && (
          <p class="older">
            <button type="button" onClick={() => void loadOlder()}>
              Earlier messages
            </button>
          </p>
        )}
        {shown.map((item) =>
          "field" in item ? (
            <p key={item.id} class="event">
              {describe(item)} · <time dateTime={item.created_at}>{new Date(item.created_at).toLocaleTimeString()}</time>
            </p>
          ) : "author_kind" in item ? (
            <article key={item.id} class="note" aria-label="Internal note">
              <span class="who">Note · {item.author}</span>
              <p>{item.content}</p>
            </article>
          ) : (
            <article key={item.id} class={`msg ${item.author}`}>
              <span class="who">
                {item.author === "user" ? "Visitor" : item.author === "admin" ? (item.agent?.name ?? "Agent") : "Assistant"} ·{" "}
                {new Date(item.timestamp).toLocaleTimeString()}
                {item.author === "admin" && item.read_by.includes("user") ? " · seen" : ""}
              </span>
              <div class="body">
                <Markdown text={item.content} />
              </div>
              {item.author === "assistant" && ratings.has(item.content) && (
                <span class={`feedback ${ratings.get(item.content)}`} title="The visitor's rating of this answer">
                  {ratings.get(item.content) === "up" ? "👍 Helpful" : "👎 Not helpful"}
                </span>
              )}
            </article>
          ),
        )}
      </div>
      {/* Outside the scrolled thread, so it is seen wherever the agent has scrolled to. */}
      <p class="typing" aria-live="polite">
        {visitorTyping ? "The visitor is typing…" : ""}
      </p>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <form class={asNote ? "reply note-mode" : "reply"} onSubmit={send}>
        {canned.list}
        <textarea
          value={draft}
          rows={3}
          aria-label={asNote ? "Internal note" : "Reply to the visitor"}
          placeholder={asNote ? "An internal note (agents only)" : "Reply to the visitor (/ for canned replies)"}
          {...canned.aria}
          onInput={(e) => {
            setDraft((e.target as HTMLTextAreaElement).value);
            canned.onInput(e.target as HTMLTextAreaElement);
            const now = Date.now();
            if (!asNote && now - lastTyping.current > 3000) {
              lastTyping.current = now;
              feed.typing(slug);
            }
          }}
          onKeyDown={(e) => {
            if (canned.onKeyDown(e)) return;
            if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) void send(e);
          }}
        />
        <div class="reply-bar">
          <label>
            <input type="checkbox" checked={asNote} onChange={(e) => setAsNote((e.target as HTMLInputElement).checked)} /> Internal note
          </label>
          <button type="submit" disabled={!draft.trim()}>
            {asNote ? "Add note" : "Send reply"}
          </button>
        </div>
      </form>
    </section>
  );
}

type NoteItem = Note & { author_kind: "note"; at: number };
type MessageItem = Message & { at: number };
type EntryItem = TimelineEntry & { at: number };

/** Messages, notes and timeline entries in one thread, in the order they happened. */
function merge(messages: Message[], notes: Note[], entries: TimelineEntry[]): (NoteItem | MessageItem | EntryItem)[] {
  const items: (NoteItem | MessageItem | EntryItem)[] = [
    ...messages.map((m) => ({ ...m, at: Date.parse(m.timestamp) })),
    ...notes.map((n) => ({ ...n, author_kind: "note" as const, at: Date.parse(n.created_at) })),
    ...entries.map((e) => ({ ...e, at: Date.parse(e.created_at) })),
  ];
  const order = new Map(items.map((item) => [item.id, ticks(item.id)]));
  return items.sort((a, b) => {
    const x = order.get(a.id) ?? 0n;
    const y = order.get(b.id) ?? 0n;
    return x < y ? -1 : x > y ? 1 : 0;
  });
}

/** The time in a version 1 UUID, in 100 ns steps: messages, notes and entries are ordered by
 * it on the server, finer than the milliseconds their times show. */
function ticks(id: string): bigint {
  const hex = id.replace(/-/g, "");
  if (hex.length !== 32) return 0n;
  return (BigInt(`0x${hex.slice(13, 16)}`) << 48n) | (BigInt(`0x${hex.slice(8, 12)}`) << 32n) | BigInt(`0x${hex.slice(0, 8)}`);
}

/** A timeline entry as a sentence: who changed what. */
function describe(e: TimelineEntry): string {
  const who = e.actor.kind === "member" ? e.actor.name : e.actor.kind === "admin_key" ? "The admin key" : "The visitor";
  if (e.field === "status") return `${who} changed the status from ${e.from} to ${e.to}`;
  if (e.field === "assignee") {
    if (!e.to) return `${who} unassigned ${e.from ?? "the ticket"}`;
    // "Assign to me" reads as taking the ticket, not as assigning it to oneself by name.
    const self = e.actor.kind === "member" && e.actor.name === e.to;
    if (self) return e.from ? `${who} took the ticket from ${e.from}` : `${who} took the ticket`;
    return e.from ? `${who} reassigned the ticket from ${e.from} to ${e.to}` : `${who} assigned the ticket to ${e.to}`;
  }
  const parts = [];
  if (e.added.length) parts.push(`added the tag${e.added.length > 1 ? "s" : ""} ${e.added.join(", ")}`);
  if (e.removed.length) parts.push(`removed the tag${e.removed.length > 1 ? "s" : ""} ${e.removed.join(", ")}`);
  return `${who} ${parts.join(" and ")}`;
}

/** A satisfaction score as five stars, the score's filled: read as "Rated n of 5". */
function Rated({ score }: { score: number }) {
  return (
    <span class={`csat score-${score}`} role="img" aria-label={`Rated ${score} of 5`} title={`Rated ${score} of 5`}>
      {"★".repeat(score) + "☆".repeat(5 - score)}
    </span>
  );
}

interface ContactCardProps {
  api: Api;
  contact: NonNullable<Ticket["contact"]>;
  slug: string;
  onOpen: (slug: string) => void;
}

/** The known visitor behind a ticket: who the customer's backend vouched for, and their other
 * tickets. Drawn from the ticket at once, then from the contact as it is now. */
function ContactCard({ api, contact, slug, onOpen }: ContactCardProps) {
  const [detail, setDetail] = useState<ContactDetail>();
  useEffect(() => {
    let live = true;
    api.contact(contact.id).then(
      (d) => live && setDetail(d),
      () => undefined,
    );
    return () => {
      live = false;
    };
  }, [contact.id]);
  const name = detail?.name ?? contact.name;
  const email = detail?.email ?? contact.email;
  const verified = detail?.verified ?? contact.verified;
  const others = (detail?.tickets ?? []).filter((t) => t.slug !== slug);
  return (
    <aside class="contact-card" aria-label="Contact">
      <p class="contact-name">
        <strong>{name ?? email ?? contact.external_id}</strong>
        {verified && (
          <span class="verified" title="The customer's backend vouched for this visitor">
            ✓ Verified
          </span>
        )}
      </p>
      {email && <p class="contact-email">{email}</p>}
      <p class="contact-id">
        External id <code>{contact.external_id}</code>
      </p>
      {others.length > 0 && (
        <div class="contact-tickets">
          <p>Their other tickets</p>
          <ul>
            {others.map((t) => (
              <li key={t.slug}>
                <button type="button" class="link" onClick={() => onOpen(t.slug)}>
                  {t.title}
                </button>{" "}
                <span class={`status ${t.status}`}>{t.status}</span>
              </li>
            ))}
          </ul>
        </div>
      )}
    </aside>
  );
}

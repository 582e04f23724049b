// The visitor's conversation: the chat with the assistant, then the ticket it may open, kept
// in the page's own storage so a reload or another tab finds it again. It owns the session
// token (renewed before it expires), the ticket's socket (reconnected with backoff, resumed
// with `?since=` so nothing is lost or shown twice), and the outbox of messages not yet sent.
// The view subscribes to it and draws `state`.

import type { components } from "../shared/api-types";
import { ApiError, json, randomKey, send } from "../shared/http";

/** The API's shapes, generated from its OpenAPI document. */
type Schemas = components["schemas"];
/** A message as the server stores and sends it. */
type ServerMessage = Schemas["Message"];

export type Author = Schemas["Participant"];

export interface Entry {
  /** The server's message id, or a local id until the server has acknowledged it. */
  id: string;
  author: Author;
  content: string;
  /** The closing "Sources" line's items, as the answer's text has them. */
  sources?: string[];
  /** The articles the answer cites, each with its link when it has one. */
  citations?: Schemas["Citation"][];
  readByAgent?: boolean;
  /** Waiting to be sent (`sending`), or refused (`failed`); absent once stored. */
  delivery?: "sending" | "failed";
  /** The idempotency key it is (re)sent with. */
  key?: string;
  /** A line about the ticket rather than a message. */
  notice?: "ticket" | "status";
  /** The assistant's answer's turn id, to rate it by. */
  turn?: string;
  /** The visitor's thumbs up or down on this answer. */
  rating?: Rating;
  /** The member who wrote an agent's message, when the server named one. */
  agent?: { name: string; avatar?: string };
}

export type Rating = Schemas["Rating"];

export type Connection = "idle" | "connecting" | "live" | "reconnecting";

/** The longest question the assistant takes, in characters (the server's chat limit). */
export const CHAT_LIMIT = 4000;
/** The longest message a ticket takes, in characters. */
export const TICKET_LIMIT = 10_000;

/** A text's length as the server counts it: in characters, not UTF-16 units. */
export function chars(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

export interface State {
  entries: Entry[];
  streaming: boolean;
  ticket?: { slug: string; status: string };
  connection: Connection;
  online: boolean;
  /** Epoch ms until which the server refuses more requests. */
  limitedUntil: number;
  agentTyping: boolean;
  /** The visitor is online but the server does not answer. */
  unreachable: boolean;
  /** The project does not allow this page's origin: the chat cannot work here. */
  refusedOrigin: boolean;
  /** `"error"` for a failure the visitor can do nothing about, else the server's reason. */
  error?: string;
  /** A refused message's text, handed back to the composer; `n` tells one hand-back from the next. */
  returned?: { text: string; n: number };
  /** The visitor's earlier conversations, read only, oldest first. */
  earlier: Entry[];
  unread: number;
  /** How the project's assistant introduces itself, once the server has said. */
  assistant?: Intro;
  /** The satisfaction survey of a solved ticket: asked once; `score` once the visitor rated. */
  survey?: { ask: boolean; score?: number; thanked?: boolean };
  /** The ticket has messages older than those shown, read a page at a time on request. */
  older: boolean;
  /** An older page is being read. */
  loadingOlder: boolean;
  /** An identified visitor's other tickets, newest first, as the server lists them. */
  known?: KnownTicket[];
  /** Where the ticket's replies are emailed while the visitor is away, once the ticket is read:
   * a verified contact's address (`verified`, not changed here) or the one the visitor gave. */
  replyTo?: { address?: string; verified: boolean };
}

/** Who the visitor is, as the page said (`Fleety.push(["setVisitor", {...}])`), checked. */
export type Visitor = Schemas["NewVisitor"];

export type Intro = Schemas["AssistantIntro"];

/** Who the page says the visitor is, as its backend vouched for them
 * (`Fleety.push(["identify", {...}])`): `user_id` with `user_hash`, or `token`. */
export type Identity = Schemas["IdentityProof"];
/** One of an identified visitor's tickets, from any device. */
export type KnownTicket = Schemas["TicketSummary"];

interface Saved {
  v: 1;
  token?: string;
  expires?: number;
  chat: Entry[];
  ticket?: { slug: string; status: string };
  assistant?: Intro;
  /** Lines of the ticket's conversation the server does not keep (the assistant's hand-off,
   * the ticket's opening, status changes), each after the stored message it followed. */
  lines?: { entry: Entry; after: string | null }[];
  earlier?: Entry[];
  /** Whether the project asks for satisfaction ratings, as the last session said. */
  csat?: boolean;
  /** Tickets whose survey is over (rated, here or elsewhere, or dismissed): never asked again. */
  surveyed?: string[];
  /** The user the session token was issued for (their user id); absent for an anonymous one. */
  who?: string;
  /** Ticket keys by slug: a project whose tickets need the session that opened them hands one
   * out with a ticket an anonymous session opens, and it outlives that session. */
  keys?: Record<string, string>;
  /** Tickets whose "get replies by email" offer the visitor dismissed. */
  noEmail?: string[];
}

/** Ticket keys kept: the newest ones. */
const KEPT_KEYS = 20;

/** Entries of earlier conversations kept in storage. */
const KEPT_EARLIER = 60;

/** Turns of the pre-ticket chat kept in storage and sent to the assistant. */
const KEPT_CHAT = 40;
const RENEW_BEFORE_MS = 60_000;
/** Messages of a ticket read at a time: the newest page when it opens, older ones as the
 * visitor scrolls up. */
export const PAGE = 50;
const MAX_BACKOFF_MS = 30_000;

export class Conversation {
  state: State = {
    entries: [],
    streaming: false,
    connection: "idle",
    online: navigator.onLine,
    limitedUntil: 0,
    agentTyping: false,
    unreachable: false,
    refusedOrigin: false,
    earlier: [],
    unread: 0,
    older: false,
    loadingOlder: false,
  };
  private saved: Saved;
  /** Where the next older page of the ticket ends (the server's `next_before`). */
  private before?: string;
  private listeners = new Set<() => void>();
  private socket?: WebSocket;
  private attempts = 0;
  private reconnectTimer?: ReturnType<typeof setTimeout>;
  private renewTimer?: ReturnType<typeof setTimeout>;
  private typingTimer?: ReturnType<typeof setTimeout>;
  private retryTimer?: ReturnType<typeof setTimeout>;
  private limitTimer?: ReturnType<typeof setTimeout>;
  private probing = false;
  private retries = 0;
  private lastTypingSent = 0;
  private closedByUs = false;
  private visible = false;
  private identity?: Identity;
  private readonly storageKey: string;

  constructor(
    private readonly base: string,
    private readonly project: string,
    private readonly onIncoming: (entry: Entry) => void,
    /** The widget's language, for the help center's search. */
    private readonly language: () => string = () => "en",
    /** Who the visitor is, when the page said: sent with the conversation that may open a ticket. */
    private readonly visitor: () => Visitor | undefined = () => undefined,
  ) {
    this.storageKey = `fleety:v1:${project}`;
    this.saved = this.load();
    this.state.ticket = this.saved.ticket;
    this.state.entries = [...this.saved.chat];
    this.state.assistant = this.saved.assistant;
    this.state.earlier = this.saved.earlier ?? [];
    addEventListener("online", () => {
      this.set({ online: true });
      this.flush();
      if (this.state.ticket && this.state.connection !== "live") this.connect(true);
    });
    addEventListener("offline", () => this.set({ online: false }));
    // Another tab of the same site changed the conversation: follow it.
    addEventListener("storage", (e) => {
      if (e.key === this.storageKey) this.adopt();
    });
  }

  /** Starts following the ticket, if there is one. */
  start() {
    if (this.state.ticket) void this.openTicket(this.state.ticket.slug);
  }

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  setVisible(visible: boolean) {
    this.visible = visible;
    // The session's answer says how the assistant introduces itself: fetched when the panel
    // first opens on an empty chat, so the greeting is there before the visitor writes.
    if (visible && !this.state.assistant && !this.state.ticket && this.state.entries.length === 0) {
      void this.token().catch((e) => this.failed(e, true));
    }
    if (visible) {
      this.set({ unread: 0 });
      void this.markRead();
      void this.refreshKnown();
    }
  }

  /** The page says who the visitor is (or, with `undefined`, that nobody is signed in). A
   * session of someone else is left behind, with its conversation: another person may share
   * this browser. An identity the server refuses is never trusted: the visitor stays anonymous. */
  identify(identity: Identity | undefined) {
    const who = identity ? whoIs(identity) : undefined;
    this.identity = identity;
    if (who !== this.saved.who) {
      if (this.saved.who) this.clear();
      // The next request starts a session for whoever is here now.
      this.saved.token = undefined;
      this.saved.expires = undefined;
      this.save();
    }
    if (this.visible) void this.refreshKnown();
    else if (!identity) this.set({ known: undefined });
  }

  /** Reads an identified visitor's tickets, to list those not on screen. */
  private async refreshKnown() {
    if (!this.identity) return;
    try {
      const token = await this.token();
      if (!this.saved.who) return;
      const list = await json<Schemas["SessionTickets"]>(`${this.base}/v1/session/tickets`, { token });
      this.set({ known: list.tickets });
    } catch (e) {
      this.failed(e, true);
    }
  }

  /** Opens one of the identified visitor's tickets; the conversation on screen moves above. */
  async openKnown(slug: string) {
    if (this.state.ticket?.slug === slug) return;
    if (this.state.ticket || this.state.entries.length) this.startOver();
    await this.openTicket(slug);
  }

  /** Sends what the visitor wrote: to the assistant before a ticket exists, to the ticket after. */
  async say(text: string) {
    const content = text.trim();
    if (!content || this.limited() || chars(content) > this.limit()) return;
    if (this.state.ticket) {
      const entry: Entry = { id: `local-${randomKey()}`, author: "user", content, delivery: "sending", key: randomKey() };
      return this.post(entry);
    }
    const question: Entry = { id: `local-${randomKey()}`, author: "user", content };
    this.set({ entries: [...this.state.entries, question], error: undefined });
    this.saveChat();
    await this.ask(question);
  }

  /** How long a message may be now: to the assistant, or on the ticket. */
  limit(): number {
    return this.state.ticket ? TICKET_LIMIT : CHAT_LIMIT;
  }

  /** Leaves a closed ticket behind: its conversation stays readable above a new chat. */
  startOver() {
    const kept = this.state.entries.filter((e) => !e.delivery && !(e.notice === "ticket"));
    const earlier = [...this.state.earlier, ...kept].slice(-KEPT_EARLIER);
    this.closeSocket();
    const { token, expires, assistant, csat, surveyed, who, keys } = this.saved;
    this.saved = { v: 1, token, expires, assistant, csat, surveyed, who, keys, chat: [], earlier };
    this.save();
    this.before = undefined;
    this.set({ entries: [], earlier, ticket: undefined, connection: "idle", streaming: false, error: undefined, unread: 0, agentTyping: false, survey: undefined, older: false, replyTo: undefined });
  }

  /** Rates the solved ticket (1 to 5, with an optional comment): once. */
  async rateTicket(score: number, comment: string) {
    const ticket = this.state.ticket;
    if (!ticket || !this.state.survey?.ask || this.limited()) return;
    try {
      const rated = await json<Schemas["TicketSummary"]>(`${this.base}/v1/tickets/${this.project}/${ticket.slug}/satisfaction`, {
        ...(await this.access(ticket.slug)),
        body: { score, comment: comment.trim() || undefined } satisfies Schemas["RateTicket"],
      });
      this.surveyDone(ticket.slug, rated.satisfaction?.score ?? score, true);
    } catch (e) {
      // Rated already (in another tab), or the project stopped asking: the survey is over.
      if (e instanceof ApiError && e.status === 409) this.surveyDone(ticket.slug, undefined);
      else this.failed(e);
    }
  }

  /** Gives, changes or (with null) removes the address the ticket's replies are emailed to.
   * Resolves to `"invalid"` when the server refused the address, else to nothing. */
  async setReplyEmail(address: string | null): Promise<"invalid" | undefined> {
    const ticket = this.state.ticket;
    if (!ticket || this.limited()) return undefined;
    try {
      const changed = await json<Schemas["TicketSummary"]>(`${this.base}/v1/tickets/${this.project}/${ticket.slug}/visitor-email`, {
        ...(await this.access(ticket.slug)),
        method: "PUT",
        body: { email: address } satisfies Schemas["SetVisitorEmail"],
      });
      this.set({ replyTo: replyTo(changed) });
    } catch (e) {
      if (e instanceof ApiError && e.status === 400) return "invalid";
      // A verified contact's address took over (another tab identified the visitor): show it.
      if (e instanceof ApiError && e.status === 409) this.set({ replyTo: { ...this.state.replyTo, verified: true } });
      else this.failed(e);
    }
    return undefined;
  }

  /** Whether the visitor dismissed the "get replies by email" offer of the open ticket. */
  emailDismissed(): boolean {
    const slug = this.state.ticket?.slug;
    return !!slug && !!this.saved.noEmail?.includes(slug);
  }

  /** The visitor wants no email: the offer is not shown again for this ticket. */
  dismissReplyEmail() {
    const slug = this.state.ticket?.slug;
    if (!slug) return;
    this.saved.noEmail = [...(this.saved.noEmail ?? []).filter((s) => s !== slug), slug].slice(-50);
    this.save();
    this.set({});
  }

  /** The visitor would rather not rate: the survey is not shown again for this ticket. */
  dismissSurvey() {
    if (this.state.ticket) this.surveyDone(this.state.ticket.slug, undefined);
  }

  private surveyDone(slug: string, score: number | undefined, thanked = false) {
    if (!this.saved.surveyed?.includes(slug)) this.saved.surveyed = [...(this.saved.surveyed ?? []), slug].slice(-50);
    this.save();
    if (this.state.ticket?.slug !== slug) return;
    const known = score ?? this.state.survey?.score;
    this.set({ survey: { ask: false, score: known, thanked: thanked || this.state.survey?.thanked } });
  }

  /** Asks for a rating when the ticket is solved, the project asks, and this ticket's survey
   * is not over. */
  private askSurvey() {
    const ticket = this.state.ticket;
    if (!ticket || this.state.survey?.score !== undefined) return;
    const solved = ticket.status === "resolved" || ticket.status === "closed";
    const ask = solved && this.saved.csat !== false && !this.saved.surveyed?.includes(ticket.slug);
    if (ask !== !!this.state.survey?.ask) this.set({ survey: { ask } });
  }

  /** Rates one of the assistant's answers; a second click on the other thumb changes it. */
  async rate(id: string, rating: Rating) {
    const entry = this.state.entries.find((e) => e.id === id);
    if (!entry?.turn || entry.rating === rating || this.limited()) return;
    try {
      const token = await this.token();
      await json<Schemas["Feedback"]>(`${this.base}/v1/chat/turns/${encodeURIComponent(entry.turn)}/feedback`, {
        token,
        body: { rating } satisfies Schemas["NewFeedback"],
      });
      this.update(id, (e) => ({ ...e, rating }));
      this.saveChat();
    } catch (e) {
      this.failed(e);
    }
  }

  retry(id: string) {
    const entry = this.state.entries.find((e) => e.id === id);
    if (entry?.delivery === "failed") this.post({ ...entry, delivery: "sending" });
  }

  /** Tells the agents the visitor is typing; at most every 3 s, never stored. */
  typing() {
    const now = Date.now();
    if (now - this.lastTypingSent < 3000 || this.socket?.readyState !== WebSocket.OPEN) return;
    this.lastTypingSent = now;
    this.socket.send(JSON.stringify({ type: "typing" }));
  }

  private closeSocket() {
    this.closedByUs = true;
    this.socket?.close(1000);
    this.socket = undefined;
    this.attempts = 0;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.renewTimer);
  }

  /** The page's visitor signed out: forget them and everything this browser kept. */
  reset() {
    this.identity = undefined;
    this.clear();
  }

  private clear() {
    this.closeSocket();
    try {
      localStorage.removeItem(this.storageKey);
    } catch {
      // Storage refused (private mode): nothing was kept.
    }
    this.saved = { v: 1, chat: [] };
    this.before = undefined;
    this.set({ entries: [], earlier: [], ticket: undefined, connection: "idle", streaming: false, error: undefined, unread: 0, older: false, known: undefined, replyTo: undefined });
  }

  // ---- the assistant ----

  private async ask(question: Entry) {
    const history = this.state.entries
      .filter((e) => !e.notice && (e.author === "user" || e.author === "assistant"))
      .slice(-50)
      .map((e) => ({ role: e.author, content: e.sources ? `${e.content}\n\nSources: ${e.sources.join("; ")}` : e.content }));
    const answer: Entry = { id: `local-${randomKey()}`, author: "assistant", content: "" };
    this.set({ streaming: true });
    try {
      const token = await this.token();
      const response = await send(`${this.base}/v1/chat/tools`, {
        token,
        body: { messages: history, enable_tool_calling: true, language: this.language(), visitor: this.visitor() },
      });
      if ((response.headers.get("Content-Type") ?? "").includes("application/json")) {
        const call = (await response.json()) as Schemas["ToolCall"];
        this.reached();
        const handoff: Entry = { ...answer, content: call.message, turn: call.turn_id };
        this.set({ entries: [...this.state.entries, handoff] });
        if (call.ticket_key) this.keepKey(call.ticket_slug, call.ticket_key);
        await this.openTicket(call.ticket_slug, handoff);
        return;
      }
      this.reached();
      this.set({ entries: [...this.state.entries, answer] });
      await readEvents(response, (data) => {
        const frame = data as {
          choices?: { delta?: { content?: string } }[];
          turn_id?: string;
          error?: string;
          citations?: Schemas["Citation"][];
        };
        const piece = frame.choices?.[0]?.delta?.content;
        if (frame.error) throw new ApiError(frame.error, 502);
        if (piece) this.update(answer.id, (e) => ({ ...e, content: e.content + piece, turn: e.turn ?? frame.turn_id }));
        const citations = frame.citations;
        if (citations) this.update(answer.id, (e) => ({ ...e, citations }));
      });
      this.update(answer.id, splitSources);
      this.saveChat();
    } catch (e) {
      this.failed(e);
      // An answer that never began leaves no empty bubble behind.
      this.set({ entries: this.state.entries.filter((x) => x.id !== answer.id || x.content) });
      // A question the server refuses would be refused again with every later one, since the
      // history goes with each: it leaves the history, and goes back to the composer.
      if (e instanceof ApiError && refusal(e)) {
        this.set({
          entries: this.state.entries.filter((x) => x.id !== question.id),
          returned: { text: question.content, n: (this.state.returned?.n ?? 0) + 1 },
        });
        this.saveChat();
      }
    } finally {
      this.set({ streaming: false });
    }
  }

  /** A session token that is valid for at least another minute. */
  private async token(): Promise<string> {
    const { token, expires } = this.saved;
    if (token && expires && expires - Date.now() > RENEW_BEFORE_MS) return token;
    if (token && expires && expires > Date.now()) {
      try {
        return this.keepToken(await json(`${this.base}/v1/session/renew`, { method: "POST", token }));
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 401) throw e;
      }
    }
    const identity = this.identity;
    if (identity) {
      try {
        const session = await json<Schemas["IssuedSession"]>(`${this.base}/v1/init-session`, {
          body: { project_id: this.project, identity } satisfies Schemas["InitSession"],
        });
        return this.keepToken(session, whoIs(identity));
      } catch (e) {
        if (!(e instanceof ApiError) || (e.status !== 400 && e.status !== 401)) throw e;
        // Refused: the server does not believe the page, and neither does the widget.
        console.warn(`Fleety: identify was refused (${e.message}); the visitor stays anonymous.`);
        this.identity = undefined;
      }
    }
    return this.keepToken(
      await json(`${this.base}/v1/init-session`, { body: { project_id: this.project } satisfies Schemas["InitSession"] }),
      undefined,
    );
  }

  private keepToken(session: Schemas["IssuedSession"], who: string | undefined = this.saved.who): string {
    this.saved.token = session.token;
    this.saved.who = session.contact ? who : undefined;
    this.saved.expires = Date.parse(session.expires_at);
    this.saved.assistant = session.assistant;
    this.saved.csat = session.csat_enabled;
    this.set({ assistant: session.assistant });
    this.save();
    // While the visitor chats, the token is renewed before it runs out.
    clearTimeout(this.renewTimer);
    const due = this.saved.expires - Date.now() - RENEW_BEFORE_MS;
    if (due > 0 && !this.state.ticket) {
      this.renewTimer = setTimeout(() => void this.token().catch(() => undefined), due + 1000);
    }
    return session.token;
  }

  // ---- the ticket ----

  private async openTicket(slug: string, handoff?: Entry) {
    const known = this.state.ticket?.slug === slug;
    const ticket = { slug, status: this.state.ticket?.status ?? "open" };
    if (!known) this.saved.lines = [];
    this.saved.ticket = ticket;
    this.save();
    this.set({ ticket });
    clearTimeout(this.renewTimer);
    try {
      // The newest page only: a long ticket's older messages are read as the visitor scrolls up.
      const view = await json<Schemas["Ticket"]>(`${this.base}/v1/tickets/${this.project}/${slug}?limit=${PAGE}`, await this.access(slug));
      this.reached();
      const messages = view.messages.map(fromServer);
      this.before = view.next_before ?? undefined;
      if (!known) {
        // The assistant's hand-off and the ticket's opening follow the conversation it copied.
        const after = messages.length ? messages[messages.length - 1].id : null;
        const opened: Entry = { id: `notice-${slug}`, author: "assistant", content: slug, notice: "ticket" };
        this.saved.lines = [...(handoff ? [handoff] : []), opened].map((entry) => ({ entry, after }));
      }
      const pending = this.state.entries.filter((e) => e.delivery);
      const score = view.satisfaction?.score;
      this.set({
        entries: [...withLines(messages, this.saved.lines ?? [], !!this.before), ...pending],
        older: !!this.before,
        ticket: { slug, status: view.status },
        survey: score === undefined ? this.state.survey : { ask: false, score },
        replyTo: replyTo(view),
      });
      this.saved.ticket = { slug, status: view.status };
      this.save();
      this.askSurvey();
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        // The ticket is gone (another server, a reset): start over.
        this.clear();
        return;
      }
      this.failed(e);
    }
    this.connect(false);
  }

  /** Reads the page of the ticket's messages before the oldest shown and puts it on top: once
   * at a time, none twice (a message the socket brought meanwhile is already there). */
  async loadOlder() {
    const ticket = this.state.ticket;
    const before = this.before;
    if (!ticket || !before || this.state.loadingOlder || this.limited()) return;
    this.set({ loadingOlder: true });
    try {
      const page = await json<Schemas["Ticket"]>(
        `${this.base}/v1/tickets/${this.project}/${ticket.slug}?limit=${PAGE}&before=${encodeURIComponent(before)}`,
        await this.access(ticket.slug),
      );
      this.reached();
      // The visitor left this ticket while the page was on its way.
      if (this.state.ticket?.slug !== ticket.slug || this.before !== before) return;
      this.before = page.next_before ?? undefined;
      const known = new Set(this.state.entries.map((e) => e.id));
      const messages = page.messages.map(fromServer).filter((m) => !known.has(m.id));
      // The lines not shown yet are those of older pages: each goes after its message.
      const lines = (this.saved.lines ?? []).filter((l) => !known.has(l.entry.id));
      const above = withLines(messages, lines, !!this.before);
      this.set({ entries: [...above, ...this.state.entries], older: !!this.before });
    } catch (e) {
      this.failed(e, true);
    } finally {
      this.set({ loadingOlder: false });
    }
  }

  private connect(now: boolean) {
    const ticket = this.state.ticket;
    if (!ticket || this.socket) return;
    clearTimeout(this.reconnectTimer);
    const delay = now || this.attempts === 0 ? 0 : backoff(this.attempts);
    this.set({ connection: this.attempts === 0 ? "connecting" : "reconnecting" });
    this.reconnectTimer = setTimeout(() => void this.open(ticket.slug), delay);
  }

  private async open(slug: string) {
    // A project may let only the ticket's own session (or its key) subscribe: the socket gets
    // a token that is valid now, renewed if need be.
    const { token, headers } = await this.access(slug);
    if (this.socket || this.state.ticket?.slug !== slug) return;
    const key = headers?.["X-Ticket-Key"];
    const last = [...this.state.entries].reverse().find((e) => !e.delivery && !e.notice && !e.id.startsWith("local-"));
    const since = last ? `?since=${encodeURIComponent(last.id)}` : "";
    const url = `${this.base.replace(/^http/, "ws")}/v1/tickets/${this.project}/${slug}/ws${since}`;
    this.closedByUs = false;
    // A browser cannot set headers on a socket: the session token (which counts the visitor's
    // requests per session, not per address) and the ticket's key go as subprotocols, never in
    // the URL.
    const offered = [...(token ? [`fleety.bearer.${token}`] : []), ...(key ? [`fleety.key.${key}`] : [])];
    const socket = new WebSocket(url, offered.length ? ["fleety", ...offered] : undefined);
    this.socket = socket;
    socket.onmessage = (event) => this.onEvent(JSON.parse(String(event.data)));
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = undefined;
      if (this.closedByUs) return;
      // Cut off for falling behind (1008), the server restarting (1001) or the network: come
      // back with backoff and resume after the last message we have.
      this.attempts += 1;
      this.set({ connection: "reconnecting" });
      this.connect(false);
    };
  }

  private onEvent(event: Schemas["TicketEvent"]) {
    const p: Record<string, unknown> = event.payload ?? {};
    switch (event.type) {
      case "subscribed": {
        this.attempts = 0;
        this.reached();
        this.set({ connection: "live" });
        // Where the ticket stands now: a change made while the socket was away is not replayed.
        const status = typeof p.status === "string" ? p.status : undefined;
        if (status && this.state.ticket && status !== this.state.ticket.status) this.statusChanged(status);
        this.flush();
        return;
      }
      case "new_message": {
        const message = fromServer(p as unknown as ServerMessage);
        const mine = this.state.entries.find((e) => e.id === message.id);
        if (mine) return;
        // The visitor's own message, echoed before its POST answered: it takes the place of the
        // entry still sending, rather than showing twice until the answer comes.
        const sending = message.author === "user" ? this.state.entries.findIndex((e) => e.delivery === "sending" && e.content === message.content) : -1;
        if (sending >= 0) {
          this.set({ entries: this.state.entries.map((e, i) => (i === sending ? message : e)) });
          return;
        }
        this.set({ entries: [...this.state.entries, message], agentTyping: false });
        if (message.author !== "user") {
          this.onIncoming(message);
          if (this.visible && document.visibilityState === "visible") void this.markRead();
          else this.set({ unread: this.state.unread + 1 });
        }
        return;
      }
      case "status_change":
        if (this.state.ticket?.status !== String(p.status)) this.statusChanged(String(p.status));
        return;
      case "ticket_update": {
        const rated = p.satisfaction as { score?: number } | undefined;
        if (rated?.score && this.state.ticket) this.surveyDone(this.state.ticket.slug, rated.score);
        if (p.reader !== "admin") return;
        const upTo = String(p.last_read_message_id);
        const index = this.state.entries.findIndex((e) => e.id === upTo);
        if (index < 0) return;
        this.set({
          entries: this.state.entries.map((e, i) => (i <= index && e.author === "user" && !e.delivery ? { ...e, readByAgent: true } : e)),
        });
        return;
      }
      case "typing":
        if (p.author === "user") return;
        clearTimeout(this.typingTimer);
        this.set({ agentTyping: true });
        this.typingTimer = setTimeout(() => this.set({ agentTyping: false }), 5000);
        return;
      case "error":
        // The server is closing this socket (we fell behind); the close handler reconnects.
        return;
    }
  }

  /** Shows and keeps the ticket's new status, with a line in the conversation. */
  private statusChanged(status: string) {
    const ticket = this.state.ticket && { ...this.state.ticket, status };
    const line: Entry = { id: `status-${Date.now()}-${randomKey().slice(0, 6)}`, author: "admin", content: status, notice: "status" };
    const last = [...this.state.entries].reverse().find(stored);
    this.saved.lines = [...(this.saved.lines ?? []), { entry: line, after: last?.id ?? null }].slice(-50);
    this.set({ ticket, entries: [...this.state.entries, line] });
    if (ticket) this.saved.ticket = ticket;
    this.save();
    this.askSurvey();
  }

  /** What a ticket's calls carry: the session token, and the ticket's key when one was given. */
  private async access(slug: string): Promise<{ token?: string; headers?: Record<string, string> }> {
    const key = this.saved.keys?.[slug];
    return { token: await this.sessionToken(), headers: key ? { "X-Ticket-Key": key } : undefined };
  }

  /** Keeps a ticket's key: the server shows it once. */
  private keepKey(slug: string, key: string) {
    const kept = Object.entries({ ...this.saved.keys, [slug]: key }).slice(-KEPT_KEYS);
    this.saved.keys = Object.fromEntries(kept);
    this.save();
  }

  /** The session token, if the visitor has one still valid (it is not renewed for this). */
  private async sessionToken(): Promise<string | undefined> {
    const { token, expires } = this.saved;
    if (token && expires && expires - Date.now() > 5_000) return token;
    // Renewing costs a request of the address's own budget; a ticket's reads work without.
    return this.token().catch(() => undefined);
  }

  /** Sends a message to the ticket, with its idempotency key, so a retry never doubles it. */
  private async post(entry: Entry) {
    const ticket = this.state.ticket;
    if (!ticket) return;
    if (!this.state.entries.some((e) => e.id === entry.id)) {
      this.set({ entries: [...this.state.entries, entry] });
    } else {
      this.update(entry.id, () => entry);
    }
    try {
      const { token, headers } = await this.access(ticket.slug);
      const stored = await json<Schemas["PostedMessage"]>(
        `${this.base}/v1/tickets/${this.project}/${ticket.slug}/messages`,
        {
          token,
          body: { author: "user", content: entry.content } satisfies Schemas["PostMessage"],
          headers: { ...headers, "Idempotency-Key": entry.key ?? randomKey() },
        },
      );
      const message = fromServer(stored.data);
      this.retries = 0;
      this.reached();
      if (!this.state.online) this.set({ online: true });
      // The socket may have delivered it already.
      const seen = this.state.entries.some((e) => e.id === message.id);
      this.set({
        entries: seen
          ? this.state.entries.filter((e) => e.id !== entry.id)
          : this.state.entries.map((e) => (e.id === entry.id ? message : e)),
      });
    } catch (e) {
      this.update(entry.id, (x) => ({ ...x, delivery: "failed" }));
      this.failed(e);
      // Sent again on its own, with the same key, once the network is back: the browser's
      // `online` event is one cue, a reconnected socket another, and this timer the last word.
      if (e instanceof ApiError && (e.offline || e.status >= 500 || e.status === 429)) this.retryLater();
    }
  }

  private retryLater() {
    clearTimeout(this.retryTimer);
    const wait = e429Wait(this.state.limitedUntil) ?? backoff(this.retries++) + 1000;
    this.retryTimer = setTimeout(() => this.flush(), wait);
  }

  /** Sends the messages that failed while offline, once the connection is back. */
  private flush() {
    if (this.limited()) return;
    for (const entry of this.state.entries) {
      if (entry.delivery === "failed" && entry.author === "user") this.retry(entry.id);
    }
  }

  private async markRead() {
    const ticket = this.state.ticket;
    const last = this.state.entries[this.state.entries.length - 1];
    if (!ticket || !last || last.author === "user" || last.notice || this.limited()) return;
    try {
      await send(`${this.base}/v1/tickets/${this.project}/${ticket.slug}/messages/read`, {
        method: "PATCH",
        ...(await this.access(ticket.slug)),
        body: { reader: "user" } satisfies Schemas["MarkRead"],
      });
    } catch (e) {
      this.failed(e, true);
    }
  }

  // ---- bookkeeping ----

  private limited(): boolean {
    return this.state.limitedUntil > Date.now();
  }

  private failed(e: unknown, quiet = false) {
    if (!(e instanceof ApiError)) {
      console.error("Fleety:", e);
      if (!quiet) this.set({ error: "error" });
      return;
    }
    if (e.status === 429) {
      this.limitFor(e.retryAfter ?? 60);
    } else if (e.offline) {
      // No answer at all. The browser knows when it is offline; otherwise the server is down,
      // or it refused this page's origin before the request was made (a failed preflight
      // looks the same to a page), which a simple request can tell apart.
      if (!navigator.onLine) this.set({ online: false });
      else void this.probe();
    } else if (e.status === 403 && /origin/.test(e.message)) {
      this.originRefused();
    } else if (!quiet) {
      this.set({ error: refusal(e) ? e.message : "error" });
    }
  }

  /** Holds sending until the rate limit ends, then lets the visitor write again. */
  private limitFor(seconds: number) {
    const until = Date.now() + seconds * 1000;
    this.set({ limitedUntil: until });
    clearTimeout(this.limitTimer);
    this.limitTimer = setTimeout(() => {
      this.set({ limitedUntil: 0 });
      this.flush();
    }, until - Date.now());
  }

  /** After a request got no answer while the browser is online: is this origin refused, or
   * is the server unreachable? A GET without headers needs no preflight, and the server makes
   * an origin's refusal (only that) readable by the page. */
  private async probe() {
    if (this.probing || this.state.refusedOrigin) return;
    this.probing = true;
    try {
      const r = await fetch(`${this.base}/v1/kb/${encodeURIComponent(this.project)}/search?q=origin&limit=1`, { credentials: "omit" });
      if (r.status === 403 && /origin/.test(String((await r.json().catch(() => ({})))?.error))) this.originRefused();
      else this.set({ unreachable: true });
    } catch {
      this.set({ unreachable: true });
    } finally {
      this.probing = false;
    }
  }

  private originRefused() {
    if (this.state.refusedOrigin) return;
    console.warn(
      `Fleety: the chat is not available on ${location.origin}: it is not among the allowed origins of project ` +
        `${this.project}. Add it to the project's allowed_origins (the inbox's Settings, or PATCH /v1/projects/${this.project}).`,
    );
    this.set({ refusedOrigin: true, unreachable: false });
  }

  /** The server answered: it is reachable again. */
  private reached() {
    if (this.state.unreachable) this.set({ unreachable: false });
  }

  private update(id: string, change: (e: Entry) => Entry) {
    this.set({ entries: this.state.entries.map((e) => (e.id === id ? change(e) : e)) });
  }

  private set(change: Partial<State>) {
    this.state = { ...this.state, ...change };
    for (const fn of this.listeners) fn();
  }

  private load(): Saved {
    try {
      const raw = localStorage.getItem(this.storageKey);
      const saved = raw ? (JSON.parse(raw) as Saved) : undefined;
      if (saved?.v === 1 && Array.isArray(saved.chat)) {
        // A question over the limit (kept by an older widget) would make every later question
        // fail along with it: it is dropped.
        saved.chat = saved.chat.filter((e) => e.author !== "user" || chars(e.content) <= CHAT_LIMIT);
        return saved;
      }
    } catch {
      // Unreadable or refused: start afresh.
    }
    return { v: 1, chat: [] };
  }

  /** Follows what another tab stored. */
  private adopt() {
    const saved = this.load();
    const slug = saved.ticket?.slug;
    this.saved = saved;
    if (slug && slug !== this.state.ticket?.slug) {
      void this.openTicket(slug);
    } else if (!slug) {
      // The other tab left the ticket (a new conversation, a reset): so does this one.
      if (this.state.ticket) this.closeSocket();
      this.set({ entries: [...saved.chat], earlier: saved.earlier ?? [], ticket: undefined, connection: "idle", replyTo: undefined });
    }
  }

  private saveChat() {
    this.saved.chat = this.state.entries.filter((e) => !e.notice && !e.delivery).slice(-KEPT_CHAT);
    this.save();
  }

  private save() {
    try {
      localStorage.setItem(this.storageKey, JSON.stringify(this.saved));
    } catch {
      // Storage refused (private mode, quota): the conversation lasts as long as the page.
    }
  }
}

/** Whether an entry is a message the server stores (not a local line or an unsent message). */
/** Where a ticket's replies are emailed: its verified contact's address, else the visitor's. */
function replyTo(view: Schemas["TicketSummary"]): State["replyTo"] {
  const contact = view.contact;
  if (contact?.verified && contact.email) return { address: contact.email, verified: true };
  return { address: view.visitor?.email ?? undefined, verified: false };
}

function stored(e: Entry): boolean {
  return !e.notice && !e.delivery && !e.id.startsWith("local-");
}

/** The ticket's messages with the lines kept beside them, each after the message it followed.
 * While older pages are still to come (`older`), a line that follows none of these messages
 * (or none at all) belongs to an older page, and waits for it. */
function withLines(messages: Entry[], lines: { entry: Entry; after: string | null }[], older = false): Entry[] {
  const ids = new Set(messages.map((m) => m.id));
  const out = older ? [] : lines.filter((l) => l.after === null).map((l) => l.entry);
  for (const m of messages) {
    out.push(m);
    for (const l of lines) if (l.after === m.id) out.push(l.entry);
  }
  // A line after a message the ticket no longer has goes last.
  if (!older) for (const l of lines) if (l.after !== null && !ids.has(l.after)) out.push(l.entry);
  return out;
}

/** A refusal the visitor should read: the server's reason, not a generic failure. */
function refusal(e: ApiError): boolean {
  return e.status >= 400 && e.status < 500 && e.status !== 401 && e.status !== 429;
}

function fromServer(m: ServerMessage): Entry {
  // "Seen" is the visitor's to know of their own messages only.
  const readByAgent = m.author === "user" && !!m.read_by?.includes("admin");
  const entry: Entry = { id: m.id, author: m.author, content: m.content, readByAgent };
  if (m.author === "admin" && m.agent?.name) {
    entry.agent = { name: m.agent.name, avatar: safeImageUrl(m.agent.avatar_url) };
  }
  return m.author === "assistant" ? splitSources(entry) : entry;
}

/** `raw` when it is an absolute http(s) URL: nothing else (javascript:, data:, relative) is
 * ever put in an image's `src`. */
export function safeImageUrl(raw: string | null | undefined): string | undefined {
  if (!raw) return undefined;
  try {
    const url = new URL(raw);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : undefined;
  } catch {
    return undefined;
  }
}

/** How long until a rate limit ends, if one is in force. */
function e429Wait(limitedUntil: number): number | undefined {
  const left = limitedUntil - Date.now();
  return left > 0 ? left + 250 : undefined;
}

/** Exponential backoff with full jitter: 0.5 s, 1 s, 2 s, ... up to 30 s. */
export function backoff(attempt: number): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(attempt, 10));
  return Math.round(Math.random() * ceiling);
}

/** Moves the answer's closing `Sources: a; b` line into the entry's sources. */
export function splitSources(entry: Entry): Entry {
  const match = /\n*Sources: ([^\n]*)\s*$/.exec(entry.content);
  if (!match) return entry;
  const sources = match[1].split("; ").map((s) => s.trim()).filter(Boolean);
  return { ...entry, content: entry.content.slice(0, match.index).trimEnd(), sources };
}

/** Reads a `text/event-stream` answer, calling `each` with every JSON `data:` event. */
async function readEvents(response: Response, each: (data: unknown) => void) {
  const reader = response.body?.getReader();
  if (!reader) return;
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        each(JSON.parse(data));
      }
    }
  }
}

/** Whom an identity names: its user id, or its token's `sub` (read, not checked: the server
 * checks). */
function whoIs(identity: Identity): string {
  if (identity.user_id) return identity.user_id;
  try {
    const payload = (identity.token ?? "").split(".")[1] ?? "";
    const sub = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/")))?.sub;
    return typeof sub === "string" ? sub : "";
  } catch {
    return "";
  }
}

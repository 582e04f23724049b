// The inbox's calls to the Fleety API, as a signed-in member or with the project's admin key.
// A member's session secret lives in an HttpOnly cookie the page cannot read; the inbox keeps
// only the session's CSRF token, sent with every call. The admin key lives in this tab's
// session storage only and travels in the Authorization header, never in a URL: the live
// feed's socket is opened with a one-minute feed token instead.

import type { components } from "../shared/api-types";
import { ApiError, json, send } from "../shared/http";

type Schemas = components["schemas"];

export interface Credentials {
  project: string;
  /** The admin key; empty for a member, whose session the cookie carries. */
  key: string;
  /** The agent's display name, for assignments and notes. */
  name: string;
  /** A member's session: its CSRF token, and who they are. */
  csrf?: string;
  role?: Role;
  memberId?: string;
}

// The API's shapes, generated from its OpenAPI document (`../shared/api-types.ts`).
export type TicketSummary = Schemas["TicketSummary"];
export type ListedTicket = Schemas["ListedTicket"];
export type Ticket = Schemas["Ticket"];
export type TicketStatus = Schemas["TicketStatus"];
export type Message = Schemas["Message"];
export type Note = Schemas["Note"];
export type TimelineEntry = Schemas["TimelineEntry"];
export type Turn = Schemas["ChatTurn"];
export type Article = Schemas["Article"];
export type Project = Schemas["Project"];
export type Webhook = Schemas["Webhook"];
export type WebhookEvent = Schemas["EventType"];
export type Delivery = Schemas["Delivery"];
export type Unanswered = Schemas["UnansweredView"];
export type Language = Schemas["Language"];
export type AssistantOutcomes = Schemas["AssistantOutcomes"];
export type AuditRecord = Schemas["AuditRecord"];
export type OutboxEmail = Schemas["EmailView"];
export type EmailQuery = { ticket?: string; limit?: number; cursor?: string };
export type AuditQuery = { member?: string; action?: string; since?: string; limit?: number; cursor?: string };
export type Role = Schemas["Role"];
export type Member = Schemas["Member"];
export type ApiToken = Schemas["ApiToken"];
export type TokenScope = Schemas["TokenScope"];
export type ContactDetail = Schemas["ContactDetail"];

/** The second step a sign-in may need: a code for this challenge. */
export interface SecondFactor {
  project: string;
  challenge: string;
}

function credentialsOf(project: string, signed: Schemas["SignedInView"]): Credentials {
  return {
    project,
    key: "",
    name: signed.member.name,
    csrf: signed.csrf_token,
    role: signed.member.role,
    memberId: signed.member.id,
  };
}

/** Signs a member in: the session cookie is set, and the credentials the inbox keeps; or, for
 * a member with two-factor authentication on, the challenge to send a code with. */
export async function signIn(project: string, email: string, password: string): Promise<Credentials | SecondFactor> {
  const response = await send(`/v1/projects/${encodeURIComponent(project)}/sign-in`, {
    body: { email, password } satisfies Schemas["SignIn"],
    cookie: true,
  });
  if (response.status === 202) {
    const needed = (await response.json()) as Schemas["SecondFactorNeeded"];
    return { project, challenge: needed.challenge };
  }
  return credentialsOf(project, (await response.json()) as Schemas["SignedInView"]);
}

/** Finishes a sign-in with a code from the authenticator app, or a recovery code. */
export async function signInSecondFactor(step: SecondFactor, code: string): Promise<Credentials> {
  // Six digits are a code; anything else is a recovery code.
  const digits = code.replace(/\s/g, "");
  const body: Schemas["SignInSecondFactor"] = /^\d{6}$/.test(digits)
    ? { challenge: step.challenge, code: digits }
    : { challenge: step.challenge, recovery_code: code.trim() };
  const signed = await json<Schemas["SignedInView"]>(`/v1/projects/${encodeURIComponent(step.project)}/sign-in/second-factor`, {
    body,
    cookie: true,
  });
  return credentialsOf(step.project, signed);
}

/** Accepts an invitation: the new member is signed in, as by `signIn`. */
export async function acceptInvitation(project: string, token: string, name: string, password: string): Promise<Credentials> {
  const signed = await json<Schemas["SignedInView"]>(`/v1/projects/${encodeURIComponent(project)}/join`, {
    body: { token, name, password } satisfies Schemas["AcceptInvitation"],
    cookie: true,
  });
  return credentialsOf(project, signed);
}

/** Sets a new password with a reset link; every session of the member ends. */
export async function completeReset(project: string, token: string, password: string): Promise<void> {
  await json(`/v1/projects/${encodeURIComponent(project)}/password-reset/complete`, {
    body: { token, password } satisfies Schemas["CompleteReset"],
  });
}

/** Asks for a reset link; answered the same whether or not the address has an account. */
export async function requestReset(project: string, email: string): Promise<void> {
  await json(`/v1/projects/${encodeURIComponent(project)}/password-reset`, {
    body: { email } satisfies Schemas["ResetRequest"],
  });
}

export type Invitation = Schemas["Invitation"];
export type CannedReply = Schemas["CannedReply"];
export type Assignee = Schemas["MessageAgent"];

export class Api {
  constructor(
    readonly creds: Credentials,
    /** Called when a member's session turns out to have ended (signed out elsewhere,
     * deactivated, a new password): the inbox goes back to its sign-in page. */
    private readonly onSessionEnded?: () => void,
  ) {}

  /** Runs a call, noticing a member's session that has ended. */
  private async watch<T>(call: Promise<T>): Promise<T> {
    try {
      return await call;
    } catch (e) {
      if (this.creds.csrf && e instanceof ApiError && e.status === 401) this.onSessionEnded?.();
      throw e;
    }
  }

  /** The admin key as the bearer, or the member's cookie with its CSRF token. */
  private get auth() {
    if (this.creds.csrf) return { cookie: true, headers: { "X-CSRF-Token": this.creds.csrf } };
    return { token: this.creds.key };
  }

  /** The admin key acts as an owner. */
  get role(): Role {
    return this.creds.role ?? "owner";
  }

  get<T>(path: string): Promise<T> {
    return this.watch(json<T>(path, { ...this.auth }));
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return this.watch(json<T>(path, { ...this.auth, body }));
  }

  patch<T>(path: string, body: unknown): Promise<T> {
    return this.watch(json<T>(path, { ...this.auth, method: "PATCH", body }));
  }

  async delete(path: string): Promise<void> {
    await this.watch(send(path, { ...this.auth, method: "DELETE" }));
  }

  /** Ends a member's session (and clears its cookie); nothing to end for the admin key. */
  async signOut(): Promise<void> {
    if (this.creds.csrf) await this.post(`/v1/projects/${this.p}/sign-out`, {});
  }

  members() {
    return this.get<Schemas["MemberList"]>(`/v1/projects/${this.p}/members`);
  }

  addMember(member: Schemas["AddMember"]) {
    return this.post<Member>(`/v1/projects/${this.p}/members`, member);
  }

  updateMember(id: string, change: Schemas["ChangeMember"]) {
    return this.patch<Member>(`/v1/projects/${this.p}/members/${id}`, change);
  }

  invitations() {
    return this.get<Schemas["InvitationList"]>(`/v1/projects/${this.p}/invitations`);
  }

  invite(invitation: Schemas["NewInvitation"]) {
    return this.post<Schemas["IssuedInvitation"]>(`/v1/projects/${this.p}/invitations`, invitation);
  }

  revokeInvitation(id: string) {
    return this.delete(`/v1/projects/${this.p}/invitations/${id}`);
  }

  resetLink(memberId: string) {
    return this.post<Schemas["IssuedReset"]>(`/v1/projects/${this.p}/members/${memberId}/password-reset`, {});
  }

  deactivateMember(id: string) {
    return this.patch<Member>(`/v1/projects/${this.p}/members/${id}`, { state: "deactivated" });
  }

  /** A page of the email outbox, newest first (owners and admins). */
  emails(query: EmailQuery) {
    const params = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]));
    return this.get<Schemas["EmailList"]>(`/v1/projects/${this.p}/emails?${params}`);
  }

  /** A page of the audit trail, newest first (owners and admins). */
  audit(query: AuditQuery) {
    const params = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]));
    return this.get<Schemas["AuditList"]>(`/v1/projects/${this.p}/audit?${params}`);
  }

  myTokens() {
    return this.get<Schemas["TokenList"]>(`/v1/projects/${this.p}/me/tokens`);
  }

  createToken(token: Schemas["NewToken"]) {
    return this.post<Schemas["CreatedToken"]>(`/v1/projects/${this.p}/me/tokens`, token);
  }

  revokeToken(id: string) {
    return this.delete(`/v1/projects/${this.p}/me/tokens/${encodeURIComponent(id)}`);
  }

  notifications() {
    return this.get<Schemas["NotificationsView"]>(`/v1/projects/${this.p}/me/notifications`);
  }

  setNotifications(change: Schemas["NotificationsChange"]) {
    return this.patch<Schemas["NotificationsView"]>(`/v1/projects/${this.p}/me/notifications`, change);
  }

  totp() {
    return this.get<Schemas["TotpView"]>(`/v1/projects/${this.p}/me/totp`);
  }

  enrolTotp() {
    return this.post<Schemas["TotpEnrolment"]>(`/v1/projects/${this.p}/me/totp`, {});
  }

  confirmTotp(code: string) {
    return this.post<Schemas["IssuedRecoveryCodes"]>(`/v1/projects/${this.p}/me/totp/confirm`, { code } satisfies Schemas["TotpCode"]);
  }

  disableTotp(proof: Schemas["TotpProof"]) {
    return this.post(`/v1/projects/${this.p}/me/totp/disable`, proof);
  }

  regenerateRecoveryCodes(proof: Schemas["TotpProof"]) {
    return this.post<Schemas["IssuedRecoveryCodes"]>(`/v1/projects/${this.p}/me/totp/recovery-codes`, proof);
  }

  get p() {
    return encodeURIComponent(this.creds.project);
  }

  project() {
    return this.get<Project>(`/v1/projects/${this.p}`);
  }

  /** `assignee`: "me", "none", a member's id, or "" for anyone. */
  tickets(status: string, q: string, cursor?: string, tag?: string, assignee?: string) {
    const params = new URLSearchParams({ limit: "25" });
    if (status) params.set("status", status);
    if (assignee) params.set("assignee", assignee);
    if (q.trim()) params.set("q", q.trim());
    if (tag) params.set("tag", tag);
    if (cursor) params.set("cursor", cursor);
    return this.get<Schemas["TicketList"]>(
      `/v1/projects/${this.p}/tickets?${params}`,
    );
  }

  ticket(slug: string) {
    return this.get<Ticket>(`/v1/tickets/${this.p}/${slug}`);
  }

  /** A contact, with the tickets they opened. */
  contact(id: string) {
    return this.get<Schemas["ContactDetail"]>(`/v1/projects/${this.p}/contacts/${encodeURIComponent(id)}`);
  }

  /** The newest `limit` messages older than `before` (the newest of all without it), with
   * `next_before` while older ones exist. */
  ticketPage(slug: string, limit: number, before?: string) {
    const params = new URLSearchParams({ limit: String(limit) });
    if (before) params.set("before", before);
    return this.get<Ticket>(`/v1/tickets/${this.p}/${slug}?${params}`);
  }

  timeline(slug: string) {
    return this.get<Schemas["Timeline"]>(`/v1/projects/${this.p}/tickets/${slug}/timeline`);
  }

  chat(slug: string) {
    return this.get<Schemas["TicketChat"]>(`/v1/projects/${this.p}/tickets/${slug}/chat`);
  }

  /** The assistant's conversation outcomes since `from` (an ISO time), up to now. */
  outcomes(from: string) {
    const params = new URLSearchParams({ from });
    return this.get<AssistantOutcomes>(`/v1/projects/${this.p}/assistant/outcomes?${params}`);
  }

  notes(slug: string) {
    return this.get<Schemas["NoteList"]>(`/v1/projects/${this.p}/tickets/${slug}/notes`);
  }

  addNote(slug: string, content: string) {
    return this.post<Note>(`/v1/projects/${this.p}/tickets/${slug}/notes`, {
      author: this.creds.name,
      content,
    } satisfies Schemas["NewNote"]);
  }

  reply(slug: string, content: string) {
    return this.post<Schemas["PostedMessage"]>(`/v1/tickets/${this.p}/${slug}/messages`, {
      author: "admin",
      content,
    } satisfies Schemas["PostMessage"]);
  }

  setStatus(slug: string, status: TicketStatus) {
    return this.patch<TicketSummary>(`/v1/tickets/${this.p}/${slug}`, { status } satisfies Schemas["ChangeTicket"]);
  }

  /** Assigns the ticket to a member (by id), or to nobody. */
  assign(slug: string, memberId: string | null) {
    return this.patch<TicketSummary>(`/v1/tickets/${this.p}/${slug}`, { assignee_id: memberId } satisfies Schemas["ChangeTicket"]);
  }

  /** Assigns the ticket to a typed name: the admin key is nobody's member, so "Assign to me" names its agent. */
  assignName(slug: string, name: string | null) {
    return this.patch<TicketSummary>(`/v1/tickets/${this.p}/${slug}`, { assignee: name } satisfies Schemas["ChangeTicket"]);
  }

  /** The members a ticket may be assigned to. */
  assignees() {
    return this.get<Schemas["AssigneeList"]>(`/v1/projects/${this.p}/assignees`);
  }

  setTags(slug: string, tags: string[]) {
    return this.patch<TicketSummary>(`/v1/tickets/${this.p}/${slug}`, { tags } satisfies Schemas["ChangeTicket"]);
  }

  markRead(slug: string) {
    return this.patch<Schemas["MarkedRead"]>(`/v1/tickets/${this.p}/${slug}/messages/read`, {
      reader: "admin",
    } satisfies Schemas["MarkRead"]);
  }

  feedToken() {
    return this.post<Schemas["FeedToken"]>(`/v1/projects/${this.p}/feed-token`, {});
  }

  articles() {
    return this.get<Schemas["ArticleList"]>(`/v1/projects/${this.p}/kb/articles`);
  }

  saveArticle(article: { id?: string; title: string; body: string; tags: string[]; language: Language; url: string | null }) {
    // `url: null` removes an article's link; a new article without one needs no field.
    const body = {
      title: article.title,
      body: article.body,
      tags: article.tags,
      language: article.language,
      url: article.url ?? (article.id ? null : undefined),
    } satisfies Schemas["NewArticle"];
    return article.id
      ? this.patch<Article>(`/v1/projects/${this.p}/kb/articles/${article.id}`, body)
      : this.post<Article>(`/v1/projects/${this.p}/kb/articles`, body);
  }

  deleteArticle(id: string) {
    return this.delete(`/v1/projects/${this.p}/kb/articles/${id}`);
  }

  setOrigins(origins: string[]) {
    return this.patch<Project>(`/v1/projects/${this.p}`, { allowed_origins: origins } satisfies Schemas["UpdateProject"]);
  }

  webhooks() {
    return this.get<Schemas["WebhookList"]>(`/v1/projects/${this.p}/webhooks`);
  }

  addWebhook(url: string, events: WebhookEvent[]) {
    return this.post<Webhook>(`/v1/projects/${this.p}/webhooks`, { url, events } satisfies Schemas["NewEndpoint"]);
  }

  updateWebhook(id: string, change: Schemas["EndpointChange"]) {
    return this.patch<Webhook>(`/v1/projects/${this.p}/webhooks/${id}`, change);
  }

  deleteWebhook(id: string) {
    return this.delete(`/v1/projects/${this.p}/webhooks/${id}`);
  }

  deliveries(id: string) {
    return this.get<Schemas["DeliveryList"]>(`/v1/projects/${this.p}/webhooks/${id}/deliveries`);
  }

  replay(id: string, delivery: string) {
    return this.post<Delivery>(`/v1/projects/${this.p}/webhooks/${id}/deliveries/${delivery}/replay`, {});
  }

  setAssistant(assistant: Pick<Schemas["UpdateProject"], "assistant_name" | "assistant_greeting" | "assistant_guidance">) {
    return this.patch<Project>(`/v1/projects/${this.p}`, assistant satisfies Schemas["UpdateProject"]);
  }

  /** Turns the satisfaction survey (CSAT) of resolved tickets on or off. */
  setTicketAccess(ticket_access: Project["ticket_access"]) {
    return this.patch<Project>(`/v1/projects/${this.p}`, { ticket_access } satisfies Schemas["UpdateProject"]);
  }

  /** Days a finished ticket is kept before it is erased; null keeps tickets for good. */
  setRetention(tickets_after_days: number | null) {
    return this.patch<Project>(`/v1/projects/${this.p}`, { retention: { tickets_after_days } } satisfies Schemas["UpdateProject"]);
  }

  setCsat(csat_enabled: boolean) {
    return this.patch<Project>(`/v1/projects/${this.p}`, { csat_enabled } satisfies Schemas["UpdateProject"]);
  }

  cannedReplies() {
    return this.get<Schemas["CannedReplyList"]>(`/v1/projects/${this.p}/canned-replies`);
  }

  saveCannedReply(reply: { id?: string; name: string; shortcut: string; body: string }) {
    const body = { name: reply.name, shortcut: reply.shortcut, body: reply.body } satisfies Schemas["NewCannedReply"];
    return reply.id
      ? this.patch<CannedReply>(`/v1/projects/${this.p}/canned-replies/${reply.id}`, body satisfies Schemas["CannedReplyChange"])
      : this.post<CannedReply>(`/v1/projects/${this.p}/canned-replies`, body);
  }

  deleteCannedReply(id: string) {
    return this.delete(`/v1/projects/${this.p}/canned-replies/${id}`);
  }

  unanswered(limit = 100) {
    return this.get<Schemas["UnansweredList"]>(`/v1/projects/${this.p}/kb/unanswered?limit=${limit}`);
  }

  dismissUnanswered(id: string) {
    return this.delete(`/v1/projects/${this.p}/kb/unanswered/${encodeURIComponent(id)}`);
  }
}

const STORAGE = "fleety:inbox";

export function savedCredentials(): Credentials | undefined {
  try {
    const raw = sessionStorage.getItem(STORAGE);
    return raw ? (JSON.parse(raw) as Credentials) : undefined;
  } catch {
    return undefined;
  }
}

export function saveCredentials(creds: Credentials | undefined) {
  try {
    if (creds) sessionStorage.setItem(STORAGE, JSON.stringify(creds));
    else sessionStorage.removeItem(STORAGE);
  } catch {
    // Storage refused: the sign-in lasts as long as the page.
  }
}

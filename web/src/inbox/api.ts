// The inbox's calls to the Fleety API, all with the project's admin key. The key lives in
// this tab's session storage only and travels in the Authorization header, never in a URL:
// the live feed's socket is opened with a one-minute feed token instead.

import { json, send } from "../shared/http";

export interface Credentials {
  project: string;
  key: string;
  /** The agent's display name, for assignments and notes. */
  name: string;
}

export interface TicketSummary {
  id: string;
  slug: string;
  title: string;
  description: string;
  status: string;
  source: string;
  assignee?: string | null;
  created_at: string;
  updated_at: string;
}

export interface Message {
  id: string;
  author: "user" | "admin" | "assistant";
  content: string;
  timestamp: string;
  read_by: string[];
}

export interface Note {
  id: string;
  author: string;
  content: string;
  created_at: string;
}

export interface Turn {
  id: string;
  role: string;
  content: string;
  at: string;
}

export interface Article {
  id: string;
  title: string;
  body: string;
  tags: string[];
  updated_at: string;
}

export interface Project {
  project_id: string;
  name: string;
  allowed_origins: string[];
}

export interface Webhook {
  id: string;
  url: string;
  events: string[];
  enabled: boolean;
  disabled_reason?: string | null;
  secret?: string;
  created_at: string;
}

export interface Delivery {
  id: string;
  event_type: string;
  status: string;
  attempts: number;
  last_status?: number | null;
  last_error?: string | null;
  next_attempt_at?: string | null;
  created_at: string;
}

export class Api {
  constructor(readonly creds: Credentials) {}

  get<T>(path: string): Promise<T> {
    return json<T>(path, { token: this.creds.key });
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return json<T>(path, { token: this.creds.key, body });
  }

  patch<T>(path: string, body: unknown): Promise<T> {
    return json<T>(path, { token: this.creds.key, method: "PATCH", body });
  }

  async delete(path: string): Promise<void> {
    await send(path, { token: this.creds.key, method: "DELETE" });
  }

  get p() {
    return encodeURIComponent(this.creds.project);
  }

  project() {
    return this.get<Project>(`/v1/projects/${this.p}`);
  }

  tickets(status: string, q: string, cursor?: string) {
    const params = new URLSearchParams({ limit: "25" });
    if (status) params.set("status", status);
    if (q.trim()) params.set("q", q.trim());
    if (cursor) params.set("cursor", cursor);
    return this.get<{ tickets: TicketSummary[]; next_cursor: string | null }>(
      `/v1/projects/${this.p}/tickets?${params}`,
    );
  }

  ticket(slug: string) {
    return this.get<TicketSummary & { messages: Message[] }>(`/v1/tickets/${this.p}/${slug}`);
  }

  chat(slug: string) {
    return this.get<{ turns: Turn[] }>(`/v1/projects/${this.p}/tickets/${slug}/chat`);
  }

  notes(slug: string) {
    return this.get<{ notes: Note[] }>(`/v1/projects/${this.p}/tickets/${slug}/notes`);
  }

  addNote(slug: string, content: string) {
    return this.post<Note>(`/v1/projects/${this.p}/tickets/${slug}/notes`, {
      author: this.creds.name,
      content,
    });
  }

  reply(slug: string, content: string) {
    return this.post<{ data: Message }>(`/v1/tickets/${this.p}/${slug}/messages`, {
      author: "admin",
      content,
    });
  }

  setStatus(slug: string, status: string) {
    return this.patch<TicketSummary>(`/v1/tickets/${this.p}/${slug}`, { status });
  }

  assign(slug: string, assignee: string | null) {
    return this.patch<TicketSummary>(`/v1/tickets/${this.p}/${slug}`, { assignee });
  }

  markRead(slug: string) {
    return this.patch<unknown>(`/v1/tickets/${this.p}/${slug}/messages/read`, { reader: "admin" });
  }

  feedToken() {
    return this.post<{ url: string }>(`/v1/projects/${this.p}/feed-token`, {});
  }

  articles() {
    return this.get<{ articles: Article[] }>(`/v1/projects/${this.p}/kb/articles`);
  }

  saveArticle(article: { id?: string; title: string; body: string; tags: string[] }) {
    const body = { title: article.title, body: article.body, tags: article.tags };
    return article.id
      ? this.patch<Article>(`/v1/projects/${this.p}/kb/articles/${article.id}`, body)
      : this.post<Article>(`/v1/projects/${this.p}/kb/articles`, body);
  }

  deleteArticle(id: string) {
    return this.delete(`/v1/projects/${this.p}/kb/articles/${id}`);
  }

  setOrigins(origins: string[]) {
    return this.patch<Project>(`/v1/projects/${this.p}`, { allowed_origins: origins });
  }

  webhooks() {
    return this.get<{ webhooks: Webhook[] }>(`/v1/projects/${this.p}/webhooks`);
  }

  addWebhook(url: string, events: string[]) {
    return this.post<Webhook>(`/v1/projects/${this.p}/webhooks`, { url, events });
  }

  updateWebhook(id: string, change: { enabled?: boolean; events?: string[]; url?: string }) {
    return this.patch<Webhook>(`/v1/projects/${this.p}/webhooks/${id}`, change);
  }

  deleteWebhook(id: string) {
    return this.delete(`/v1/projects/${this.p}/webhooks/${id}`);
  }

  deliveries(id: string) {
    return this.get<{ deliveries: Delivery[] }>(`/v1/projects/${this.p}/webhooks/${id}/deliveries`);
  }

  replay(id: string, delivery: string) {
    return this.post<Delivery>(`/v1/projects/${this.p}/webhooks/${id}/deliveries/${delivery}/replay`, {});
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

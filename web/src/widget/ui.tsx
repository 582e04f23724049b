// The widget's panel: the conversation, the composer and the help-center search, drawn with
// Preact inside the loader's shadow root. Loaded on first open or when the page is idle.

import { render } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

import type { components } from "../shared/api-types";
import { json } from "../shared/http";
import { Markdown } from "../shared/markdown";
import { EmailOffer } from "./email-offer";
import { chars, Conversation, type Entry, type Rating, type State } from "./conversation";
import { translator, type Translator } from "./i18n";
import type { Shell, Ui } from "./shell";
import { PANEL_CSS } from "./ui-css";

export function mount(shell: Shell): Ui {
  const style = document.createElement("style");
  style.textContent = PANEL_CSS;
  shell.root.prepend(style);
  let t = translator(shell.locale);
  let open = false;
  const conversation = new Conversation(
    shell.base,
    shell.project,
    (entry) => {
      shell.emit("message", { author: entry.author, content: entry.content });
    },
    () => t.lang,
    () => shell.visitor,
  );
  conversation.subscribe(() => shell.setBadge(conversation.state.unread));
  const draw = () => render(<Panel shell={shell} conversation={conversation} t={t} open={open} />, shell.panel);
  conversation.start();
  draw();
  return {
    opened() {
      open = true;
      conversation.setVisible(true);
      draw();
    },
    closed() {
      open = false;
      conversation.setVisible(false);
      draw();
    },
    setLocale(locale) {
      t = translator(locale);
      draw();
    },
    reset() {
      conversation.reset();
    },
    identify(identity) {
      conversation.identify(identity);
    },
    openTicket(slug) {
      void conversation.openKnown(slug);
    },
  };
}

function useConversation(conversation: Conversation): State {
  const [state, setState] = useState(conversation.state);
  useEffect(() => conversation.subscribe(() => setState(conversation.state)), [conversation]);
  return state;
}

interface PanelProps {
  shell: Shell;
  conversation: Conversation;
  t: Translator;
  open: boolean;
}

function Panel({ shell, conversation, t, open }: PanelProps) {
  const state = useConversation(conversation);
  const [tab, setTab] = useState<"chat" | "help">("chat");
  const dialog = useRef<HTMLDivElement>(null);

  // Keyboard focus stays inside the open panel; Escape closes it.
  useEffect(() => {
    if (!open) return;
    const el = dialog.current;
    el?.querySelector<HTMLElement>("textarea, input")?.focus();
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") {
        e.preventDefault();
        shell.close();
        return;
      }
      if (e.key !== "Tab" || !el) return;
      const focusable = [...el.querySelectorAll<HTMLElement>("button:not([disabled]), textarea:not([disabled]), input, a[href]")];
      if (focusable.length === 0) return;
      const first = focusable[0];
      const last = focusable[focusable.length - 1];
      const active = shell.root.activeElement;
      if (e.shiftKey && active === first) {
        e.preventDefault();
        last.focus();
      } else if (!e.shiftKey && active === last) {
        e.preventDefault();
        first.focus();
      }
    };
    el?.addEventListener("keydown", onKey);
    return () => el?.removeEventListener("keydown", onKey);
  }, [open]);

  return (
    <div class="dialog" role="dialog" aria-modal="true" aria-labelledby="fleety-title" dir={t.dir} lang={t.lang} ref={dialog}>
      <header>
        <div>
          <h2 id="fleety-title">{t("title")}</h2>
          <p>{t("subtitle")}</p>
        </div>
        <button class="icon" type="button" aria-label={t("close")} onClick={() => shell.close()}>
          ×
        </button>
      </header>
      <div class="tabs" role="tablist">
        <button role="tab" type="button" aria-selected={tab === "chat"} onClick={() => setTab("chat")}>
          {t("chatTab")}
        </button>
        <button role="tab" type="button" aria-selected={tab === "help"} onClick={() => setTab("help")}>
          {t("helpTab")}
        </button>
      </div>
      <Banner state={state} t={t} />
      {tab === "chat" ? <Chat conversation={conversation} state={state} t={t} open={open} /> : <Help shell={shell} t={t} />}
    </div>
  );
}

function Banner({ state, t }: { state: State; t: Translator }) {
  const [now, setNow] = useState(Date.now());
  const limited = state.limitedUntil > now;
  useEffect(() => {
    if (!limited) return;
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [limited, state.limitedUntil]);
  let text: string | undefined;
  if (state.refusedOrigin) text = t("unavailable");
  else if (!state.online) text = t("offline");
  else if (state.unreachable) text = t("unreachable");
  else if (limited) text = t("limited", { seconds: Math.ceil((state.limitedUntil - now) / 1000) });
  else if (state.connection === "reconnecting") text = t("reconnecting");
  else if (state.error) text = state.error === "error" ? t("error") : t("refused", { reason: state.error });
  if (!text) return null;
  return (
    <div class="banner" role="status">
      {text}
    </div>
  );
}

function Chat({ conversation, state, t, open }: { conversation: Conversation; state: State; t: Translator; open: boolean }) {
  const list = useRef<HTMLDivElement>(null);
  const [draft, setDraft] = useState("");
  const closed = state.ticket?.status === "closed";
  const limited = state.limitedUntil > Date.now();
  const blocked = limited || state.refusedOrigin;
  const max = conversation.limit();
  const length = chars(draft.trim());
  const over = length > max;

  // The newest message is in view: as messages arrive, and when the panel opens (a hidden
  // panel has no layout to scroll). Anything else that changes the list's height happens
  // above what the visitor reads (an older page going in on top, its loading line): the
  // distance from the bottom is kept, so what they read stays where it is.
  const fromBottom = useRef<number | undefined>(undefined);
  const bottom = useRef("");
  // How many entries there were when a short list last asked for the page before: asked once
  // per size, so a page that fails is not asked for again and again.
  const filled = useRef(-1);
  const last = state.entries[state.entries.length - 1];
  const newest = [last?.id, last?.content.length, last?.delivery, state.streaming, state.agentTyping, open].join("|");
  useLayoutEffect(() => {
    const el = list.current;
    if (!el || !open) return;
    if (newest !== bottom.current || fromBottom.current === undefined) el.scrollTop = el.scrollHeight;
    else el.scrollTop = el.scrollHeight - fromBottom.current;
    bottom.current = newest;
    fromBottom.current = el.scrollHeight - el.scrollTop;
    // A first page too short to scroll brings the one before it at once.
    if (state.older && !state.loadingOlder && el.scrollHeight <= el.clientHeight && filled.current !== state.entries.length) {
      filled.current = state.entries.length;
      void conversation.loadOlder();
    }
  });
  const onScroll = () => {
    const el = list.current;
    if (!el) return;
    fromBottom.current = el.scrollHeight - el.scrollTop;
    if (el.scrollTop < 150 && state.older) void conversation.loadOlder();
  };

  // A message the server refused comes back to the composer, to shorten or change.
  useEffect(() => {
    if (state.returned) setDraft(state.returned.text);
  }, [state.returned?.n]);

  const submit = (e?: Event) => {
    e?.preventDefault();
    if (!draft.trim() || state.streaming || blocked || over) return;
    void conversation.say(draft);
    setDraft("");
  };

  const streamingEmpty = state.streaming && state.entries[state.entries.length - 1]?.author !== "assistant";
  return (
    <>
      <div class="log" role="log" aria-live="polite" aria-relevant="additions" tabIndex={0} aria-label={t("chatTab")} ref={list} onScroll={onScroll}>
        {!state.older && <Known state={state} conversation={conversation} t={t} />}
        {state.loadingOlder ? (
          <p class="notice older" role="status">
            {t("loadingEarlier")}
          </p>
        ) : (
          state.older && (
            <p class="notice older">
              <button class="link" type="button" onClick={() => void conversation.loadOlder()}>
                {t("showEarlier")}
              </button>
            </p>
          )
        )}
        {!state.older && state.earlier.length > 0 && (
          <div class="earlier" aria-label={t("earlier")}>
            <p class="notice">{t("earlier")}</p>
            {state.earlier.map((entry) => (
              <Line key={`earlier-${entry.id}`} entry={entry} t={t} name={state.assistant?.name} onRetry={() => undefined} />
            ))}
            <p class="notice divider">{t("newConversation")}</p>
          </div>
        )}
        {state.entries.length === 0 && (
          <div class="message assistant">
            {state.assistant?.name && <span class="who">{state.assistant.name}</span>}
            <p class="bubble assistant greeting">{state.assistant?.greeting ?? t("welcome")}</p>
          </div>
        )}
        {state.entries.map((entry, i) => (
          <Line
            key={entry.id}
            entry={entry}
            t={t}
            name={state.assistant?.name}
            onRetry={() => conversation.retry(entry.id)}
            // An answer is rated once it is whole, and only in the chat with the assistant.
            onRate={entry.turn && !state.ticket && !(state.streaming && i === state.entries.length - 1) ? (r) => void conversation.rate(entry.id, r) : undefined}
          />
        ))}
        {(streamingEmpty || state.agentTyping) && (
          <p class="typing" aria-label={`${state.ticket ? t("agent") : t("assistant")} ${t("typing")}`}>
            <span />
            <span />
            <span />
          </p>
        )}
      </div>
      {state.survey?.ask && <Survey conversation={conversation} t={t} busy={blocked} />}
      {state.survey?.thanked && state.survey.score !== undefined && (
        <p class="survey thanks" role="status">
          {t("csatThanks")} {t("csatGiven", { n: state.survey.score })}
        </p>
      )}
      {state.ticket && !closed && <EmailOffer conversation={conversation} state={state} t={t} />}
      {closed ? (
        <div class="closed">
          <p>{t("closedTicket")}</p>
          <button class="restart" type="button" onClick={() => conversation.startOver()}>
            {t("startNew")}
          </button>
        </div>
      ) : (
        <form class="composer" onSubmit={submit}>
          {!state.ticket && (
            <button class="human" type="button" disabled={state.streaming || blocked} onClick={() => void conversation.say(t("humanAsk"))}>
              {t("human")}
            </button>
          )}
          <div class="row">
            <textarea
              rows={1}
              value={draft}
              placeholder={t("placeholder")}
              aria-label={t("placeholder")}
              aria-describedby={length > max * 0.8 ? "fleety-count" : undefined}
              aria-invalid={over || undefined}
              disabled={blocked}
              onInput={(e) => {
                setDraft((e.target as HTMLTextAreaElement).value);
                conversation.typing();
              }}
              onKeyDown={(e) => {
                if (e.key === "Enter" && !e.shiftKey) submit(e);
              }}
            />
            <button class="send" type="submit" aria-label={t("send")} disabled={!draft.trim() || state.streaming || blocked || over}>
              ➤
            </button>
          </div>
          {length > max * 0.8 && (
            <p id="fleety-count" class={over ? "count over" : "count"} aria-live="polite">
              {over ? t("tooLong", { max }) : t("count", { n: length, max })}
            </p>
          )}
        </form>
      )}
    </>
  );
}

/** The satisfaction survey: five scores, an optional comment, and a way to decline. */
function Survey({ conversation, t, busy }: { conversation: Conversation; t: Translator; busy: boolean }) {
  const [score, setScore] = useState<number | undefined>();
  const [comment, setComment] = useState("");
  const [sending, setSending] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    if (score === undefined || sending) return;
    setSending(true);
    try {
      await conversation.rateTicket(score, comment);
    } finally {
      setSending(false);
    }
  };
  return (
    <form class="survey" onSubmit={submit} aria-labelledby="fleety-csat">
      <p id="fleety-csat" class="ask">
        {t("csatAsk")}
      </p>
      <div class="scores" role="radiogroup" aria-labelledby="fleety-csat">
        {[1, 2, 3, 4, 5].map((n) => (
          <button
            key={n}
            type="button"
            role="radio"
            class="score"
            aria-checked={score === n}
            aria-label={t("csatScore", { n })}
            onClick={() => setScore(n)}
          >
            {n}
          </button>
        ))}
      </div>
      {score !== undefined && (
        <textarea
          class="comment"
          rows={2}
          maxLength={1000}
          value={comment}
          placeholder={t("csatComment")}
          aria-label={t("csatComment")}
          onInput={(e) => setComment((e.target as HTMLTextAreaElement).value)}
        />
      )}
      <div class="actions">
        <button class="skip" type="button" onClick={() => conversation.dismissSurvey()}>
          {t("csatSkip")}
        </button>
        <button class="send-rating" type="submit" disabled={score === undefined || sending || busy}>
          {t("csatSend")}
        </button>
      </div>
    </form>
  );
}

function statusWord(status: string, t: Translator): string {
  const words: Record<string, Parameters<Translator>[0]> = {
    open: "statusOpen",
    pending: "statusPending",
    resolved: "statusResolved",
    closed: "statusClosed",
  };
  return words[status] ? t(words[status]) : status;
}

/** An http(s) link, or nothing: a link from the server is still never a `javascript:` one. */
export function safeLink(url: string | null | undefined): string | undefined {
  if (!url) return undefined;
  try {
    const parsed = new URL(url);
    return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : undefined;
  } catch {
    return undefined;
  }
}

/** A cited article: its title, linked to where it is published when it says. */
function Citation({ title, url }: { title: string; url?: string | null }) {
  const href = safeLink(url);
  if (!href) return <span class="source">{title}</span>;
  return (
    <a class="source" href={href} target="_blank" rel="noopener noreferrer">
      {title}
    </a>
  );
}

interface LineProps {
  entry: Entry;
  t: Translator;
  name?: string | null;
  onRetry: () => void;
  onRate?: (rating: Rating) => void;
}

function Line({ entry, t, name, onRetry, onRate }: LineProps) {
  if (entry.notice === "ticket") return <p class="notice">{t("ticketOpened", { slug: entry.content })}</p>;
  if (entry.notice === "status") return <p class="notice">{t("status", { status: statusWord(entry.content, t) })}</p>;
  const who =
    entry.author === "user" ? t("you") : entry.author === "admin" ? (entry.agent?.name ?? t("agent")) : (name ?? t("assistant"));
  return (
    <div class={`message ${entry.author}`} data-id={entry.id}>
      <span class="who">
        {entry.agent?.avatar && (
          <img class="avatar" src={entry.agent.avatar} alt="" width={16} height={16} referrerpolicy="no-referrer" loading="lazy" />
        )}
        {who}
      </span>
      <div class={`bubble ${entry.author}`}>
        <Markdown text={entry.content} />
      </div>
      {entry.citations && entry.citations.length > 0 ? (
        <p class="sources">
          {t("sources")}: {entry.citations.map((c) => <Citation key={c.article_id} title={c.title} url={c.url} />)}
        </p>
      ) : (
        entry.sources &&
        entry.sources.length > 0 && (
          <p class="sources">
            {t("sources")}: {entry.sources.map((s) => <span class="source" key={s}>{s}</span>)}
          </p>
        )
      )}
      {entry.delivery === "sending" && <span class="meta">{t("sending")}</span>}
      {entry.delivery === "failed" && (
        <button class="meta retry" type="button" onClick={onRetry}>
          {t("failed")}
        </button>
      )}
      {entry.readByAgent && <span class="meta seen">{t("seen")}</span>}
      {onRate && (
        <div class="rating" role="group" aria-label={t("rateAnswer")}>
          <button class="rate up" type="button" aria-label={t("helpful")} aria-pressed={entry.rating === "up"} onClick={() => onRate("up")}>
            <Thumb />
          </button>
          <button class="rate down" type="button" aria-label={t("notHelpful")} aria-pressed={entry.rating === "down"} onClick={() => onRate("down")}>
            <Thumb />
          </button>
        </div>
      )}
    </div>
  );
}

/** A thumb, drawn rather than an emoji: not every system has an emoji font. */
function Thumb() {
  return (
    <svg viewBox="0 0 24 24" width="14" height="14" aria-hidden="true">
      <path d="M2 10h4v11H2zM8 21h9.5a2 2 0 0 0 2-1.6l1.4-7A2 2 0 0 0 19 10h-5.2l.8-4.1A2.2 2.2 0 0 0 12.4 3L8 10z" fill="currentColor" />
    </svg>
  );
}

type Hit = components["schemas"]["SearchHit"];
type Article = components["schemas"]["Article"];

/** The server's passages join paragraphs up to about this many characters. */
const PASSAGE_CHARS = 700;

/** The article's paragraphs, cut as the server cuts passages, and which of them is the match:
 * the passage starts at the paragraph holding the hit's snippet, and of the paragraphs it
 * takes, the one sharing most words with the query is where the answer is. -1 when the
 * snippet is not found (the article changed since the search). */
function passageIn(body: string, snippet: string, query: string): { paragraphs: string[]; match: number } {
  const paragraphs = body
    .replace(/\r\n/g, "\n")
    .split("\n\n")
    .map((p) => p.trim())
    .filter(Boolean);
  const start = snippet.split("\n\n")[0].trim().slice(0, 80);
  const first = start ? paragraphs.findIndex((p) => p.includes(start)) : -1;
  if (first < 0) return { paragraphs, match: -1 };
  const words = query
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter((w) => w.length > 2);
  let [match, best, length] = [first, 0, 0];
  for (let i = first; i < paragraphs.length && (i === first || length + paragraphs[i].length <= PASSAGE_CHARS); i++) {
    length += paragraphs[i].length + 2;
    const text = paragraphs[i].toLowerCase();
    const score = words.filter((w) => text.includes(w)).length;
    if (score > best) [match, best] = [i, score];
  }
  return { paragraphs, match };
}

function Help({ shell, t }: { shell: Shell; t: Translator }) {
  const [query, setQuery] = useState("");
  const [hits, setHits] = useState<Hit[] | undefined>();
  const [failed, setFailed] = useState(false);
  const [open, setOpen] = useState<{ hit: Hit; article: Article; query: string }>();
  const search = async (e: Event) => {
    e.preventDefault();
    if (!query.trim()) return;
    try {
      const found = await json<components["schemas"]["SearchResults"]>(
        `${shell.base}/v1/kb/${shell.project}/search?q=${encodeURIComponent(query)}&limit=5`,
      );
      setHits(found.results);
      setFailed(false);
    } catch {
      setFailed(true);
    }
  };
  const read = async (hit: Hit) => {
    try {
      const article = await json<Article>(`${shell.base}/v1/kb/${shell.project}/articles/${hit.article_id}`);
      setOpen({ hit, article, query });
      setFailed(false);
    } catch {
      setFailed(true);
    }
  };
  if (open) {
    return (
      <ArticleView
        article={open.article}
        snippet={open.hit.snippet}
        query={open.query}
        t={t}
        onBack={() => {
          const id = open.hit.article_id;
          setOpen(undefined);
          // Back where the visitor was: on the result they opened.
          requestAnimationFrame(() => shell.root.querySelector<HTMLElement>(`[data-article="${id}"]`)?.focus());
        }}
      />
    );
  }
  return (
    <div class="help">
      <form class="search" role="search" onSubmit={search}>
        <input
          type="search"
          value={query}
          placeholder={t("searchPlaceholder")}
          aria-label={t("searchPlaceholder")}
          onInput={(e) => setQuery((e.target as HTMLInputElement).value)}
        />
        <button type="submit">{t("search")}</button>
      </form>
      {failed && <p class="banner">{t("error")}</p>}
      {hits && hits.length === 0 && <p class="empty">{t("noResults")}</p>}
      <ul class="hits">
        {hits?.map((hit) => (
          <li key={hit.article_id}>
            <button type="button" data-article={hit.article_id} onClick={() => void read(hit)}>
              <strong>{hit.title}</strong>
              <p>{hit.snippet}</p>
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}

/** An article in the panel, scrolled to the passage the search matched, which is marked. */
function ArticleView({ article, snippet, query, t, onBack }: { article: Article; snippet: string; query: string; t: Translator; onBack: () => void }) {
  const { paragraphs, match: first } = passageIn(article.body, snippet, query);
  const match = useRef<HTMLParagraphElement>(null);
  const top = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = match.current;
    if (el) {
      el.scrollIntoView({ block: "start" });
      el.focus({ preventScroll: true });
    } else top.current?.focus();
  }, [article.id]);
  return (
    <div class="help article" ref={top} tabIndex={-1}>
      <button type="button" class="back" onClick={onBack}>
        ← {t("backToResults")}
      </button>
      <h2>{article.title}</h2>
      {paragraphs.map((p, i) => (
        <p key={i} class={i === first ? "match" : undefined} ref={i === first ? match : undefined} tabIndex={i === first ? -1 : undefined}>
          {p}
        </p>
      ))}
      {article.url && (
        <p>
          <a href={article.url} target="_blank" rel="noopener noreferrer">
            {article.url}
          </a>
        </p>
      )}
    </div>
  );
}

/** An identified visitor's other tickets, from any device: each opens where the chat is. */
function Known({ state, conversation, t }: { state: State; conversation: Conversation; t: Translator }) {
  const others = (state.known ?? []).filter((k) => k.slug !== state.ticket?.slug);
  if (others.length === 0) return null;
  return (
    <nav class="known" aria-label={t("yours")}>
      <p class="notice">{t("yours")}</p>
      <ul>
        {others.map((k) => (
          <li key={k.slug}>
            <button type="button" onClick={() => void conversation.openKnown(k.slug)}>
              <span class="title">{k.title}</span>
              <span class="state">{statusWord(k.status, t)}</span>
            </button>
          </li>
        ))}
      </ul>
    </nav>
  );
}

// The knowledge base the assistant answers from: list, create, edit and delete articles, and
// the questions it could not answer, most asked first, so admins know what to write next.

import { useEffect, useState } from "preact/hooks";

import type { Api, Article, Language, Unanswered } from "./api";

interface Draft {
  id?: string;
  title: string;
  body: string;
  tags: string;
  language: Language;
  url: string;
}

const EMPTY: Draft = { title: "", body: "", tags: "", language: "en", url: "" };

/** The languages the help center's search has an analyser for (the API's `Language`). */
const LANGUAGES: [Language, string][] = [
  ["en", "English"],
  ["de", "Deutsch"],
  ["es", "Español"],
  ["fr", "Français"],
  ["it", "Italiano"],
  ["nl", "Nederlands"],
  ["pt", "Português"],
  ["ar", "العربية"],
];

function draftOf(a: Article): Draft {
  return { id: a.id, title: a.title, body: a.body, tags: a.tags.join(", "), language: a.language, url: a.url ?? "" };
}

export function KnowledgeBase({ api }: { api: Api }) {
  // Agents read the knowledge base; owners and admins write it.
  const readOnly = api.role === "agent";
  const [articles, setArticles] = useState<Article[]>([]);
  const [draft, setDraft] = useState<Draft>(EMPTY);
  const [message, setMessage] = useState<string>();
  const [error, setError] = useState<string>();

  const load = async () => {
    try {
      setArticles((await api.articles()).articles);
    } catch (e) {
      setError((e as Error).message);
    }
  };
  useEffect(() => {
    void load();
  }, []);

  const save = async (e: Event) => {
    e.preventDefault();
    try {
      const tags = draft.tags.split(",").map((t) => t.trim()).filter(Boolean);
      const url = draft.url.trim() || null;
      const saved = await api.saveArticle({ id: draft.id, title: draft.title, body: draft.body, tags, language: draft.language, url });
      setMessage(draft.id ? "Article saved." : "Article created.");
      setError(undefined);
      setDraft(draftOf(saved));
      await load();
    } catch (err) {
      setError((err as Error).message);
    }
  };

  const remove = async () => {
    if (!draft.id || !confirm(`Delete "${draft.title}"?`)) return;
    try {
      await api.deleteArticle(draft.id);
      setDraft(EMPTY);
      setMessage("Article deleted.");
      await load();
    } catch (err) {
      setError((err as Error).message);
    }
  };

  return (
    <div class="kb">
      <section class="list" aria-label="Articles">
        {readOnly ? (
          <p class="hint">Read only: owners and admins edit the knowledge base.</p>
        ) : (
          <button type="button" class="new" onClick={() => setDraft(EMPTY)}>
            New article
          </button>
        )}
        <ul>
          {articles.map((a) => (
            <li key={a.id}>
              <button
                type="button"
                class={draft.id === a.id ? "ticket selected" : "ticket"}
                onClick={() => setDraft(draftOf(a))}
              >
                <span class="title">{a.title}</span>
                <span class="sub">{[a.language, ...a.tags].join(", ")}</span>
              </button>
            </li>
          ))}
        </ul>
      </section>
      <section class="detail">
        <form class="article" onSubmit={save}>
          <h1>{draft.id ? "Edit article" : "New article"}</h1>
          <label>
            Title
            <input value={draft.title} required maxLength={200} onInput={(e) => setDraft({ ...draft, title: (e.target as HTMLInputElement).value })} />
          </label>
          <label>
            Body <span class="hint">(blank lines separate the passages the assistant quotes)</span>
            <textarea value={draft.body} required rows={14} onInput={(e) => setDraft({ ...draft, body: (e.target as HTMLTextAreaElement).value })} />
          </label>
          <label>
            Tags <span class="hint">(comma-separated)</span>
            <input value={draft.tags} onInput={(e) => setDraft({ ...draft, tags: (e.target as HTMLInputElement).value })} />
          </label>
          <div class="row">
            <label>
              Language <span class="hint">(how search reads it)</span>
              <select value={draft.language} onChange={(e) => setDraft({ ...draft, language: (e.target as HTMLSelectElement).value as Language })}>
                {LANGUAGES.map(([code, name]) => (
                  <option key={code} value={code}>
                    {name}
                  </option>
                ))}
              </select>
            </label>
            <label class="grow">
              Link <span class="hint">(where it is published; the assistant cites it)</span>
              <input type="url" value={draft.url} maxLength={2048} placeholder="https://help.example.com/..." onInput={(e) => setDraft({ ...draft, url: (e.target as HTMLInputElement).value })} />
            </label>
          </div>
          {error && (
            <p class="error" role="alert">
              {error}
            </p>
          )}
          {message && !error && <p role="status">{message}</p>}
          {!readOnly && (
            <div class="row">
              <button type="submit">{draft.id ? "Save" : "Create"}</button>
              {draft.id && (
                <button type="button" class="danger" onClick={() => void remove()}>
                  Delete
                </button>
              )}
            </div>
          )}
        </form>
        <UnansweredQuestions api={api} readOnly={readOnly} onWrite={(question) => setDraft({ ...EMPTY, title: question })} />
      </section>
    </div>
  );
}

function UnansweredQuestions({ api, readOnly, onWrite }: { api: Api; readOnly: boolean; onWrite: (question: string) => void }) {
  const [questions, setQuestions] = useState<Unanswered[]>();
  const [error, setError] = useState<string>();
  const load = async () => {
    try {
      setQuestions((await api.unanswered()).questions);
      setError(undefined);
    } catch (e) {
      setError((e as Error).message);
    }
  };
  useEffect(() => {
    void load();
  }, []);
  const dismiss = async (q: Unanswered) => {
    try {
      await api.dismissUnanswered(q.id);
      await load();
    } catch (e) {
      setError((e as Error).message);
    }
  };
  return (
    <section class="card unanswered" aria-labelledby="unanswered-title">
      <div class="log-bar">
        <h2 id="unanswered-title">Unanswered questions</h2>
        <button type="button" onClick={() => void load()}>
          Refresh
        </button>
      </div>
      <p class="hint">Questions the assistant had no answer to, or that visitors took to a person right after an answer. Most asked first.</p>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {questions && questions.length === 0 && <p class="hint">None so far.</p>}
      <ul>
        {questions?.map((q) => (
          <li key={q.id} class="question" data-id={q.id}>
            <span class="count" title="Times asked">
              {q.count}×
            </span>
            <span class="title">{q.example}</span>
            <span class="sub">
              last asked <time dateTime={q.last_seen}>{new Date(q.last_seen).toLocaleString()}</time>
            </span>
            {!readOnly && (
              <>
                <button type="button" onClick={() => onWrite(q.example)}>
                  Write article
                </button>
                <button type="button" onClick={() => void dismiss(q)} aria-label={`Dismiss "${q.example}"`}>
                  Dismiss
                </button>
              </>
            )}
          </li>
        ))}
      </ul>
    </section>
  );
}

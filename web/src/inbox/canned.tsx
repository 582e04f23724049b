// Canned replies: the settings card that manages them, and the picker that inserts one into
// the reply box when the agent types `/` and a shortcut.
//
// Placeholders are filled in when a reply is inserted, so the agent sees and may edit the
// text before sending it: {{agent.name}} becomes the agent's display name (from the sign-in),
// {{visitor.name}} the visitor's name when the ticket has one, else VISITOR_FALLBACK.

import type { JSX } from "preact";
import { useEffect, useState } from "preact/hooks";

import type { Api, CannedReply } from "./api";

/** What {{visitor.name}} becomes when the visitor's name is not known: "Hi there,". */
export const VISITOR_FALLBACK = "there";

/** The server's limits (characters), as the API description states them. */
const LIMITS = { name: 80, shortcut: 32, body: 5000 } as const;

/** The body with its placeholders filled in. */
export function fill(body: string, names: { agent: string; visitor: string | null }): string {
  return body.replace(/\{\{\s*(visitor\.name|agent\.name)\s*\}\}/g, (_, which: string) =>
    which === "agent.name" ? names.agent : names.visitor?.trim() || VISITOR_FALLBACK,
  );
}

/**
 * The `/` a picker answers: a slash at the start of the draft or after a space, followed by
 * what the agent typed of a shortcut, ending at the caret. Its start and the query.
 */
export function trigger(text: string, caret: number): { start: number; query: string } | undefined {
  const before = text.slice(0, caret);
  const m = /(^|\s)\/([a-z0-9_-]*)$/i.exec(before);
  if (!m) return undefined;
  return { start: before.length - m[2].length - 1, query: m[2].toLowerCase() };
}

/** Replies matching a query: shortcuts that start with it first, then names that hold it. */
export function matching(replies: CannedReply[], query: string): CannedReply[] {
  const q = query.toLowerCase();
  const first = replies.filter((r) => r.shortcut.startsWith(q));
  const then = replies.filter((r) => !r.shortcut.startsWith(q) && (r.shortcut.includes(q) || r.name.toLowerCase().includes(q)));
  return [...first, ...then].slice(0, 8);
}

interface PickerState {
  start: number;
  query: string;
  active: number;
}

/**
 * The picker of one reply box. `onInput` and `onKeyDown` go on the textarea (a `true` from
 * `onKeyDown` means the picker took the key), `aria` too, and `list` is rendered above it.
 */
export function useCannedPicker(opts: {
  api: Api;
  id: string;
  enabled: boolean;
  visitor: string | null;
  setDraft: (text: string) => void;
}) {
  const { api, id, enabled, visitor, setDraft } = opts;
  const [replies, setReplies] = useState<CannedReply[]>();
  const [state, setState] = useState<PickerState>();
  const [error, setError] = useState<string>();

  // Loaded when the picker first opens, and again each time it opens after an edit elsewhere.
  const load = () =>
    api.cannedReplies().then(
      (list) => {
        setReplies(list.canned_replies);
        setError(undefined);
      },
      (e) => setError((e as Error).message),
    );

  const options = state && replies ? matching(replies, state.query) : [];
  const open = enabled && state !== undefined;

  const onInput = (el: HTMLTextAreaElement) => {
    const found = enabled ? trigger(el.value, el.selectionStart ?? el.value.length) : undefined;
    if (found && !state) void load();
    setState(found && { ...found, active: 0 });
  };

  const insert = (el: HTMLTextAreaElement, reply: CannedReply) => {
    if (!state) return;
    const text = fill(reply.body, { agent: api.creds.name, visitor });
    const caret = el.selectionStart ?? el.value.length;
    const next = el.value.slice(0, state.start) + text + el.value.slice(caret);
    setDraft(next);
    setState(undefined);
    const at = state.start + text.length;
    // After Preact has put the new value in the textarea.
    requestAnimationFrame(() => {
      el.focus();
      el.setSelectionRange(at, at);
    });
  };

  const onKeyDown = (e: KeyboardEvent): boolean => {
    if (!open) return false;
    const el = e.target as HTMLTextAreaElement;
    if (e.key === "Escape") {
      setState(undefined);
    } else if (e.key === "ArrowDown" && options.length) {
      setState({ ...state, active: (state.active + 1) % options.length });
    } else if (e.key === "ArrowUp" && options.length) {
      setState({ ...state, active: (state.active - 1 + options.length) % options.length });
    } else if ((e.key === "Enter" || e.key === "Tab") && !e.ctrlKey && !e.metaKey && options.length) {
      insert(el, options[Math.min(state.active, options.length - 1)]);
    } else {
      return false;
    }
    e.preventDefault();
    return true;
  };

  const optionId = (i: number) => `${id}-option-${i}`;
  // A textarea keeps its textbox role (HTML allows no other), which takes these: the list it
  // completes from, and the option the arrows have reached.
  const aria = {
    "aria-autocomplete": "list" as const,
    "aria-controls": open ? `${id}-list` : undefined,
    "aria-activedescendant": open && options.length > 0 ? optionId(Math.min(state.active, options.length - 1)) : undefined,
  };

  let list: JSX.Element | null = null;
  if (open) {
    list = (
      <div class="canned-picker">
        <ul id={`${id}-list`} role="listbox" aria-label="Canned replies">
          {options.map((r, i) => (
            <li
              key={r.id}
              id={optionId(i)}
              role="option"
              aria-selected={i === state.active}
              class={i === state.active ? "active" : ""}
              // Not a click: the textarea keeps the focus and the caret.
              onMouseDown={(e) => {
                e.preventDefault();
                const el = (e.currentTarget as HTMLElement).closest("form")?.querySelector("textarea");
                if (el) insert(el, r);
              }}
            >
              <span class="shortcut">/{r.shortcut}</span> <span class="name">{r.name}</span>
              <span class="preview">{fill(r.body, { agent: api.creds.name, visitor })}</span>
            </li>
          ))}
        </ul>
        <p class="hint" aria-live="polite">
          {error
            ? error
            : replies === undefined
              ? "Loading canned replies…"
              : options.length === 0
                ? replies.length === 0
                  ? "No canned replies yet: add them in Settings."
                  : `No canned reply matches /${state.query}.`
                : "↑ ↓ to choose, Enter or Tab to insert, Esc to close."}
        </p>
      </div>
    );
  }
  return { onInput, onKeyDown, aria, list };
}

/** The settings card: the project's canned replies, added, changed and deleted. */
export function CannedReplies({ api }: { api: Api }) {
  const [replies, setReplies] = useState<CannedReply[]>([]);
  const [editing, setEditing] = useState<string>();
  const [name, setName] = useState("");
  const [shortcut, setShortcut] = useState("");
  const [body, setBody] = useState("");
  const [error, setError] = useState<string>();
  const [note, setNote] = useState<string>();

  const load = () =>
    api.cannedReplies().then(
      (list) => setReplies(list.canned_replies),
      (e) => setError((e as Error).message),
    );
  useEffect(() => {
    void load();
  }, []);

  const reset = () => {
    setEditing(undefined);
    setName("");
    setShortcut("");
    setBody("");
  };
  const save = async (e: Event) => {
    e.preventDefault();
    try {
      await api.saveCannedReply({ id: editing, name, shortcut, body });
      setNote(editing ? "Saved." : `Added /${shortcut.replace(/^\//, "")}.`);
      setError(undefined);
      reset();
      await load();
    } catch (err) {
      setNote(undefined);
      setError((err as Error).message);
    }
  };
  const edit = (r: CannedReply) => {
    setEditing(r.id);
    setName(r.name);
    setShortcut(r.shortcut);
    setBody(r.body);
    setNote(undefined);
  };
  const remove = async (r: CannedReply) => {
    if (!confirm(`Delete the canned reply /${r.shortcut}?`)) return;
    await api.deleteCannedReply(r.id).catch((err) => setError((err as Error).message));
    if (editing === r.id) reset();
    await load();
  };
  const count = (text: string, max: number, id: string) => {
    const n = [...text].length;
    return (
      <span id={id} class={n > max ? "counter over" : "counter"} aria-live="polite">
        {n} / {max}
      </span>
    );
  };
  const over = [...name].length > LIMITS.name || [...body].length > LIMITS.body || shortcut.length > LIMITS.shortcut + 1;
  return (
    <section class="card" aria-labelledby="canned-title">
      <h2 id="canned-title">Canned replies</h2>
      <p class="hint">
        Type <kbd>/</kbd> and a shortcut in a reply to insert one. In the text, <code>{"{{visitor.name}}"}</code> becomes the visitor's
        name ("{VISITOR_FALLBACK}" when it is not known) and <code>{"{{agent.name}}"}</code> your display name.
      </p>
      <form class="canned-form" onSubmit={save}>
        <div class="row">
          <label class="grow">
            Reply name {count(name, LIMITS.name, "canned-name-count")}
            <input required value={name} placeholder="Refund timeline" aria-describedby="canned-name-count" onInput={(e) => setName((e.target as HTMLInputElement).value)} />
          </label>
          <label>
            Shortcut
            <input
              required
              value={shortcut}
              placeholder="refund"
              pattern="/?[a-z0-9_\-]{1,32}"
              title="1 to 32 lowercase letters, digits, - or _"
              onInput={(e) => setShortcut((e.target as HTMLInputElement).value)}
            />
          </label>
        </div>
        <label>
          Reply text {count(body, LIMITS.body, "canned-body-count")}
          <textarea
            required
            rows={3}
            value={body}
            placeholder="Hi {{visitor.name}}, refunds reach your account within five working days. {{agent.name}}"
            aria-describedby="canned-body-count"
            onInput={(e) => setBody((e.target as HTMLTextAreaElement).value)}
          />
        </label>
        <div class="row">
          <button type="submit" disabled={over}>
            {editing ? "Save changes" : "Add canned reply"}
          </button>
          {editing && (
            <button type="button" onClick={reset}>
              Cancel
            </button>
          )}
        </div>
      </form>
      {note && <p role="status">{note}</p>}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {replies.length === 0 ? (
        <p class="hint">No canned replies yet.</p>
      ) : (
        <ul class="canned-list">
          {replies.map((r) => (
            <li key={r.id}>
              <div class="hook-row">
                <code>/{r.shortcut}</code>
                <strong>{r.name}</strong>
                <button type="button" onClick={() => edit(r)} aria-label={`Edit /${r.shortcut}`}>
                  Edit
                </button>
                <button type="button" class="danger" onClick={() => void remove(r)} aria-label={`Delete /${r.shortcut}`}>
                  Delete
                </button>
              </div>
              <p class="sub">{r.body}</p>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

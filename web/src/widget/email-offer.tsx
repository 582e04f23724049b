// The optional "get replies by email" field under a ticket's conversation (issue 28): when an
// agent answers while the visitor is away, the replies they have not read are emailed to the
// address given here. Offered once the ticket is open and has no address; once given, the
// address shows, marked unverified, with a way to change or remove it. A verified contact's
// address is the server's to use and is not offered for change.

import { useEffect, useRef, useState } from "preact/hooks";

import type { Conversation, State } from "./conversation";
import type { Translator } from "./i18n";

export function EmailOffer({ conversation, state, t }: { conversation: Conversation; state: State; t: Translator }) {
  const [editing, setEditing] = useState(false);
  const [draft, setDraft] = useState("");
  const [invalid, setInvalid] = useState(false);
  const [busy, setBusy] = useState(false);
  // What the live region says after a change: read out by screen readers, shown to everyone.
  const [said, setSaid] = useState("");
  const input = useRef<HTMLInputElement>(null);
  const change = useRef<HTMLButtonElement>(null);
  const moved = useRef(false);
  useEffect(() => {
    if (editing) input.current?.focus();
    else if (moved.current) change.current?.focus();
    moved.current = false;
  }, [editing, state.replyTo?.address]);

  const replyTo = state.replyTo;
  if (!state.ticket || !replyTo || replyTo.verified) return null;
  const address = replyTo.address;
  const status = (
    <p class="email-said" role="status" aria-live="polite">
      {said}
    </p>
  );
  if (!address && !editing && conversation.emailDismissed()) return status;

  const save = async (e: Event) => {
    e.preventDefault();
    const wanted = draft.trim();
    if (!wanted || busy) return;
    setBusy(true);
    try {
      const refused = await conversation.setReplyEmail(wanted);
      setInvalid(refused === "invalid");
      if (refused === "invalid") return;
      moved.current = true;
      setEditing(false);
      setSaid(t("emailSaved", { address: wanted }));
    } finally {
      setBusy(false);
    }
  };
  const remove = async () => {
    setBusy(true);
    try {
      await conversation.setReplyEmail(null);
      setEditing(false);
      setDraft("");
      setSaid(t("emailRemoved"));
    } finally {
      setBusy(false);
    }
  };

  if (address && !editing) {
    return (
      <div class="reply-email">
        <p class="to">
          {t("emailTo")} <strong>{address}</strong> <span class="unverified">({t("emailUnverified")})</span>
        </p>
        <button
          ref={change}
          class="link"
          type="button"
          onClick={() => {
            setDraft(address);
            setInvalid(false);
            setSaid("");
            setEditing(true);
          }}
        >
          {t("emailChange")}
        </button>
        {status}
      </div>
    );
  }
  return (
    <form class="reply-email" onSubmit={save} noValidate>
      <label for="fleety-reply-email">{t("emailAsk")}</label>
      <div class="row">
        <input
          id="fleety-reply-email"
          ref={input}
          type="email"
          autoComplete="email"
          inputMode="email"
          maxLength={254}
          value={draft}
          placeholder={t("emailPlaceholder")}
          aria-invalid={invalid || undefined}
          aria-describedby={invalid ? "fleety-reply-email-problem" : undefined}
          onInput={(e) => {
            setDraft((e.target as HTMLInputElement).value);
            setInvalid(false);
          }}
          onKeyDown={(e) => {
            if (e.key === "Escape" && address) setEditing(false);
          }}
        />
        <button class="save-email" type="submit" disabled={!draft.trim() || busy}>
          {t("emailSave")}
        </button>
      </div>
      {invalid && (
        <p id="fleety-reply-email-problem" class="problem" role="alert">
          {t("emailInvalid")}
        </p>
      )}
      <div class="actions">
        {address ? (
          <>
            <button class="link" type="button" disabled={busy} onClick={() => void remove()}>
              {t("emailRemove")}
            </button>
            <button class="link" type="button" onClick={() => setEditing(false)}>
              {t("emailCancel")}
            </button>
          </>
        ) : (
          <button class="link" type="button" onClick={() => conversation.dismissReplyEmail()}>
            {t("emailDismiss")}
          </button>
        )}
      </div>
      {status}
    </form>
  );
}

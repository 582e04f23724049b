// A secret the server shows once (a token, an invitation or reset link, a TOTP secret, recovery
// codes): read-only text to select or copy, with a Copy button, and optionally a button to
// put it away. The page keeps nothing of it once dismissed.

import { useState } from "preact/hooks";

export function CopyOnce({ label, value, onDone }: { label: string; value: string | string[]; onDone?: () => void }) {
  const [copied, setCopied] = useState(false);
  const text = Array.isArray(value) ? value.join("\n") : value;
  const select = (e: Event) => (e.target as HTMLInputElement | HTMLTextAreaElement).select();
  return (
    <div class="link-out">
      {Array.isArray(value) ? (
        <textarea readOnly aria-label={label} rows={value.length} class="secret" value={text} onFocus={select} />
      ) : (
        <input readOnly aria-label={label} class="secret" value={text} onFocus={select} />
      )}
      <button
        type="button"
        onClick={() =>
          navigator.clipboard?.writeText(text).then(
            () => setCopied(true),
            () => undefined,
          )
        }
      >
        {copied ? "Copied" : "Copy"}
      </button>
      {onDone && (
        <button type="button" onClick={onDone}>
          Done, I copied it
        </button>
      )}
    </div>
  );
}

// The Account page's two-factor authentication: turning it on (the secret and its otpauth://
// URI, shown once, to paste into an authenticator app, then a first code), the recovery codes
// (shown once), turning it off and new recovery codes (each with the password or a code).

import { useEffect, useState } from "preact/hooks";

import type { Api } from "./api";
import { CopyOnce } from "./secret";

interface Status {
  enabled: boolean;
  pending: boolean;
  recovery_codes_left: number;
}

/** Six digits are a code from the app; anything else is the password. */
function proofOf(text: string): { code: string } | { password: string } {
  const digits = text.replace(/\s/g, "");
  return /^\d{6}$/.test(digits) ? { code: digits } : { password: text };
}

export function TwoFactor({ api }: { api: Api }) {
  const [status, setStatus] = useState<Status>();
  const [enrolment, setEnrolment] = useState<{ secret: string; otpauth_uri: string }>();
  const [codes, setCodes] = useState<string[]>();
  const [code, setCode] = useState("");
  const [proof, setProof] = useState("");
  const [error, setError] = useState<string>();
  const load = () =>
    api.totp().then(
      (s) => setStatus(s),
      (e) => setError((e as Error).message),
    );
  useEffect(() => {
    void load();
  }, []);
  const act = async (what: () => Promise<unknown>) => {
    try {
      await what();
      setError(undefined);
      await load();
    } catch (e) {
      setError((e as Error).message);
    }
  };
  const confirm = (e: Event) => {
    e.preventDefault();
    void act(async () => {
      const made = await api.confirmTotp(code.replace(/\s/g, ""));
      setEnrolment(undefined);
      setCode("");
      setCodes(made.recovery_codes);
    });
  };
  return (
    <section class="card" aria-labelledby="totp-title">
      <h2 id="totp-title">Two-factor authentication</h2>
      <p class="hint">
        With it on, signing in asks for a six-digit code from an authenticator app (or one of your recovery codes) after your password.
      </p>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {codes && (
        <div role="status">
          <p>Your recovery codes: each signs you in once without the app. Keep them somewhere safe: they will not be shown again.</p>
          <CopyOnce label="Recovery codes" value={codes} onDone={() => setCodes(undefined)} />
        </div>
      )}
      {!status ? (
        <p class="empty">Loading…</p>
      ) : enrolment ? (
        <form onSubmit={confirm} class="stack">
          <p>Add this key to your authenticator app (type the secret, or paste the link into an app that takes one), then type the code it shows.</p>
          <p class="hint">Secret</p>
          <CopyOnce label="Secret" value={enrolment.secret} />
          <p class="hint">otpauth link</p>
          <CopyOnce label="otpauth link" value={enrolment.otpauth_uri} />
          <label>
            Code from the app
            <input required inputMode="numeric" autoComplete="one-time-code" maxLength={16} value={code} onInput={(e) => setCode((e.target as HTMLInputElement).value)} />
          </label>
          <button type="submit">Turn on</button>
        </form>
      ) : status.enabled ? (
        <form class="stack" onSubmit={(e) => e.preventDefault()}>
          <p>
            <strong>On.</strong> {status.recovery_codes_left} recovery code{status.recovery_codes_left === 1 ? "" : "s"} left.
          </p>
          <label>
            Your password or a code from the app
            <input type="password" autoComplete="current-password" value={proof} onInput={(e) => setProof((e.target as HTMLInputElement).value)} />
          </label>
          <div class="row">
            <button
              type="button"
              onClick={() =>
                act(async () => {
                  const made = await api.regenerateRecoveryCodes(proofOf(proof));
                  setProof("");
                  setCodes(made.recovery_codes);
                })
              }
            >
              New recovery codes
            </button>
            <button
              type="button"
              class="danger"
              onClick={() =>
                act(async () => {
                  await api.disableTotp(proofOf(proof));
                  setProof("");
                  setCodes(undefined);
                })
              }
            >
              Turn off
            </button>
          </div>
        </form>
      ) : (
        <button type="button" onClick={() => act(async () => setEnrolment(await api.enrolTotp()))}>
          Turn on two-factor authentication
        </button>
      )}
    </section>
  );
}

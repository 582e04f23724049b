// The signed-in member's own account: which emails they receive, two-factor authentication,
// and their personal API
// tokens, for integrations. A new token's secret is shown once, right after it is made; the
// list never has it.

import { useEffect, useState } from "preact/hooks";

import type { Api, ApiToken, TokenScope } from "./api";
import { CopyOnce } from "./secret";
import { EmailSwitches } from "./notifications";
import { TwoFactor } from "./totp";

export function Account({ api }: { api: Api }) {
  const [tokens, setTokens] = useState<ApiToken[]>();
  const [error, setError] = useState<string>();
  const [made, setMade] = useState<{ name: string; secret: string }>();
  const load = () =>
    api.myTokens().then(
      (list) => setTokens(list.tokens),
      (e) => setError((e as Error).message),
    );
  useEffect(() => {
    void load();
  }, []);
  const revoke = async (t: ApiToken) => {
    try {
      await api.revokeToken(t.id);
      setError(undefined);
      await load();
    } catch (e) {
      setError((e as Error).message);
    }
  };
  return (
    <div class="settings">
      <EmailSwitches api={api} />
      <TwoFactor api={api} />
      <section class="card" aria-labelledby="tokens-title">
        <h2 id="tokens-title">Personal API tokens</h2>
        <p class="hint">
          A token lets an integration call the API as you, with your role: send it as <code>Authorization: Bearer …</code>. A read token may only read.
        </p>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        {made && (
          <div role="status">
            <p>
              Copy the token for “{made.name}” now: it will not be shown again.
            </p>
            <CopyOnce label="New token" value={made.secret} onDone={() => setMade(undefined)} />
          </div>
        )}
        {!tokens ? (
          <p class="empty">Loading…</p>
        ) : tokens.length === 0 ? (
          <p class="empty">No tokens yet.</p>
        ) : (
          <table class="members">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Scope</th>
                <th scope="col">Created</th>
                <th scope="col">Last used</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {tokens.map((t) => (
                <tr key={t.id}>
                  <td>{t.name}</td>
                  <td>{t.scope}</td>
                  <td>{new Date(t.created_at).toLocaleString()}</td>
                  <td>{t.last_used_at ? new Date(t.last_used_at).toLocaleString() : "never"}</td>
                  <td>
                    <button type="button" class="danger" onClick={() => revoke(t)}>
                      Revoke {t.name}
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <NewToken
        api={api}
        onMade={async (name, secret) => {
          setMade({ name, secret });
          setError(undefined);
          await load();
        }}
      />
    </div>
  );
}

function NewToken({ api, onMade }: { api: Api; onMade: (name: string, secret: string) => Promise<unknown> }) {
  const [name, setName] = useState("");
  const [scope, setScope] = useState<TokenScope>("read");
  const [error, setError] = useState<string>();
  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      const created = await api.createToken({ name, scope });
      setError(undefined);
      setName("");
      await onMade(created.name, created.secret);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return (
    <section class="card" aria-labelledby="new-token-title">
      <h2 id="new-token-title">Make a token</h2>
      <form onSubmit={submit} class="stack">
        <label>
          Name
          <input required maxLength={100} placeholder="What it is for" value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          Scope
          <select aria-label="Scope" value={scope} onChange={(e) => setScope((e.target as HTMLSelectElement).value as TokenScope)}>
            <option value="read">read: look only</option>
            <option value="write">write: act as me</option>
          </select>
        </label>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit">Make token</button>
      </form>
    </section>
  );
}

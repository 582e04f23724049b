// The project's members, for its owners and admins: who they are, their role and state,
// invitations by link (made, listed, revoked), a reset link for a member, a form to add one
// with a password, and deactivation. Admins manage agents only; the server says so if asked
// for more, and the page shows what it said. A link is shown once, to copy: the server keeps
// only a digest of its token.

import { useEffect, useState } from "preact/hooks";

import type { Api, Invitation, Member, Role } from "./api";
import { CopyOnce } from "./secret";

/** A link the server made, to copy and hand over. */
function LinkOut({ label, path }: { label: string; path: string }) {
  return <CopyOnce label={label} value={`${location.origin}${path}`} />;
}

const ROLES: Role[] = ["agent", "admin", "owner"];

export function Members({ api }: { api: Api }) {
  const [members, setMembers] = useState<Member[]>();
  const [invitations, setInvitations] = useState<Invitation[]>([]);
  const [error, setError] = useState<string>();
  const [reset, setReset] = useState<{ name: string; path: string; emailed: boolean }>();
  const load = () =>
    Promise.all([api.members(), api.invitations()]).then(
      ([list, pending]) => {
        setMembers(list.members);
        setInvitations(pending.invitations);
      },
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
  // An admin may give and change the agent role only.
  const roles = api.role === "owner" ? ROLES : (["agent"] as Role[]);
  return (
    <div class="settings">
      <section class="card" aria-labelledby="members-title">
        <h2 id="members-title">Members</h2>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        {!members ? (
          <p class="empty">Loading…</p>
        ) : (
          <table class="members">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Email</th>
                <th scope="col">Role</th>
                <th scope="col">State</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {members.map((m) => {
                const mayChange = m.id !== api.creds.memberId && roles.includes(m.role);
                return (
                  <tr key={m.id}>
                    <td>{m.name}</td>
                    <td>{m.email}</td>
                    <td>
                      {mayChange ? (
                        <select
                          aria-label={`Role of ${m.name}`}
                          value={m.role}
                          onChange={(e) => act(() => api.updateMember(m.id, { role: (e.target as HTMLSelectElement).value as Role }))}
                        >
                          {roles.map((r) => (
                            <option value={r} key={r}>
                              {r}
                            </option>
                          ))}
                        </select>
                      ) : (
                        m.role
                      )}
                    </td>
                    <td>{m.state}</td>
                    <td>
                      {mayChange && m.state !== "deactivated" && (
                        <button type="button" class="danger" onClick={() => act(() => api.deactivateMember(m.id))}>
                          Deactivate {m.name}
                        </button>
                      )}
                      {mayChange && m.state !== "deactivated" && (
                        <button
                          type="button"
                          onClick={() =>
                            act(async () => {
                              const link = await api.resetLink(m.id);
                              setReset({ name: m.name, path: link.path, emailed: link.emailed });
                            })
                          }
                        >
                          Reset link for {m.name}
                        </button>
                      )}
                      {mayChange && m.state === "deactivated" && (
                        <button type="button" onClick={() => act(() => api.updateMember(m.id, { state: "active" }))}>
                          Reactivate {m.name}
                        </button>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        )}
        {reset && (
          <div class="stack">
            <p role="status">
              {reset.emailed
                ? `A password-reset link, working once within the hour, was emailed to ${reset.name}. It is also here, shown only now:`
                : `A password-reset link for ${reset.name}, working once within the hour. Give it to them:`}
            </p>
            <LinkOut label={`Reset link for ${reset.name}`} path={reset.path} />
          </div>
        )}
      </section>
      <Invite api={api} roles={roles} invitations={invitations} onChanged={load} />
      <AddMember api={api} roles={roles} onAdded={load} />
    </div>
  );
}

function AddMember({ api, roles, onAdded }: { api: Api; roles: Role[]; onAdded: () => Promise<unknown> }) {
  const [email, setEmail] = useState("");
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const [role, setRole] = useState<Role>("agent");
  const [error, setError] = useState<string>();
  const [note, setNote] = useState<string>();
  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      const added = await api.addMember({ email, name, password, role });
      setNote(`${added.name} can sign in now with that password.`);
      setError(undefined);
      setEmail("");
      setName("");
      setPassword("");
      await onAdded();
    } catch (err) {
      setError((err as Error).message);
      setNote(undefined);
    }
  };
  return (
    <section class="card" aria-labelledby="add-member-title">
      <h2 id="add-member-title">Add a member</h2>
      <form onSubmit={submit} class="stack">
        <label>
          Email
          <input type="email" required value={email} onInput={(e) => setEmail((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          Name
          <input required maxLength={100} value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          Password
          <input type="password" required minLength={10} autoComplete="new-password" value={password} onInput={(e) => setPassword((e.target as HTMLInputElement).value)} />
        </label>
        <p class="hint">At least 10 characters, of two kinds or more (lower case, upper case, digits, others). Give it to them in person.</p>
        <label>
          Role
          <select aria-label="Role" value={role} onChange={(e) => setRole((e.target as HTMLSelectElement).value as Role)}>
            {roles.map((r) => (
              <option value={r} key={r}>
                {r}
              </option>
            ))}
          </select>
        </label>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        {note && <p role="status">{note}</p>}
        <button type="submit">Add member</button>
      </form>
    </section>
  );
}

function Invite({ api, roles, invitations, onChanged }: { api: Api; roles: Role[]; invitations: Invitation[]; onChanged: () => Promise<unknown> }) {
  const [email, setEmail] = useState("");
  const [role, setRole] = useState<Role>("agent");
  const [error, setError] = useState<string>();
  const [made, setMade] = useState<{ email: string; path: string; emailed: boolean }>();
  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      const issued = await api.invite({ email, role });
      setMade({ email: issued.invitation.email, path: issued.path, emailed: issued.emailed });
      setError(undefined);
      setEmail("");
      await onChanged();
    } catch (err) {
      setError((err as Error).message);
      setMade(undefined);
    }
  };
  const revoke = async (id: string) => {
    try {
      await api.revokeInvitation(id);
      setError(undefined);
      await onChanged();
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return (
    <section class="card" aria-labelledby="invite-title">
      <h2 id="invite-title">Invite someone</h2>
      <form onSubmit={submit} class="stack">
        <label>
          Email to invite
          <input type="email" required value={email} onInput={(e) => setEmail((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          Role to give
          <select value={role} onChange={(e) => setRole((e.target as HTMLSelectElement).value as Role)}>
            {roles.map((r) => (
              <option value={r} key={r}>
                {r}
              </option>
            ))}
          </select>
        </label>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit">Invite</button>
      </form>
      {made && (
        <div class="stack">
          <p role="status">
            {made.emailed
              ? `The invitation was emailed to ${made.email}. Its link, working once, is also here, shown only now:`
              : `Invitation link for ${made.email}, working once. Give it to them; it is shown only now:`}
          </p>
          <LinkOut label={`Invitation link for ${made.email}`} path={made.path} />
        </div>
      )}
      {invitations.length > 0 && (
        <table class="members">
          <caption>Pending invitations</caption>
          <thead>
            <tr>
              <th scope="col">Email</th>
              <th scope="col">Role</th>
              <th scope="col">Expires</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {invitations.map((i) => (
              <tr key={i.id}>
                <td>{i.email}</td>
                <td>{i.role}</td>
                <td>{new Date(i.expires_at).toLocaleString()}</td>
                <td>
                  {roles.includes(i.role) && (
                    <button type="button" class="danger" onClick={() => revoke(i.id)}>
                      Revoke invitation for {i.email}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

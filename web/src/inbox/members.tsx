// The project's members, for its owners and admins: who they are, their role and state, a
// form to add one, and deactivation. Admins manage agents only; the server says so if asked
// for more, and the page shows what it said.

import { useEffect, useState } from "preact/hooks";

import type { Api, Member, Role } from "./api";

const ROLES: Role[] = ["agent", "admin", "owner"];

export function Members({ api }: { api: Api }) {
  const [members, setMembers] = useState<Member[]>();
  const [error, setError] = useState<string>();
  const load = () =>
    api.members().then(
      (list) => setMembers(list.members),
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
      </section>
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

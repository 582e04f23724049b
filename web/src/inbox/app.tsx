// The inbox's frame: signing in (a member's email and password, or the project's admin key),
// the live feed, the unread count (in the tab's title, with a
// sound and a notification while the tab is hidden), and the three views.

import { useEffect, useMemo, useRef, useState } from "preact/hooks";

import { ApiError } from "../shared/http";
import { AlertSettings, alertAgent } from "./alerts";
import type { ComponentChildren } from "preact";
import { acceptInvitation, Api, completeReset, type Credentials, requestReset, saveCredentials, savedCredentials, type SecondFactor, signIn, signInSecondFactor } from "./api";
import { Feed, type FeedEvent, type FeedState } from "./feed";
import { KnowledgeBase } from "./kb";
import { Account } from "./account";
import { Audit } from "./audit";
import { Members } from "./members";
import { Settings } from "./settings";
import { INBOX_CSS } from "./styles";
import { Tickets } from "./tickets";

/** An invitation or reset link's page: `#/accept?project=…&token=…` or `#/reset?…`. The
 * token travels in the fragment, which the browser never sends to the server. */
function linkPage(): { page: "accept" | "reset"; project: string; token: string } | undefined {
  const match = /^#\/(accept|reset)\?(.*)$/.exec(location.hash);
  if (!match) return undefined;
  const params = new URLSearchParams(match[2]);
  const project = params.get("project") ?? "";
  const token = params.get("token") ?? "";
  if (!project || !token) return undefined;
  return { page: match[1] as "accept" | "reset", project, token };
}

/** Where an email to an agent points: `#/ticket?project=…&slug=…` (a ticket) or
 * `#/account?project=…` (the email switches), for the project signed in to. The fragment is
 * cleared once read. */
function emailLink(project: string): { ticket?: string; account?: boolean } {
  const match = /^#\/(ticket|account)\?(.*)$/.exec(location.hash);
  if (!match) return {};
  const params = new URLSearchParams(match[2]);
  if (params.get("project") !== project) return {};
  history.replaceState(null, "", location.pathname + location.search);
  return match[1] === "ticket" ? { ticket: params.get("slug") ?? undefined } : { account: true };
}

/** Leaves a link's page: the token goes out of the address bar and the history entry. */
function leaveLinkPage() {
  history.replaceState(null, "", location.pathname + location.search);
}

export function App() {
  const [creds, setCreds] = useState<Credentials | undefined>(savedCredentials);
  const [link, setLink] = useState(linkPage);
  const [notice, setNotice] = useState<string>();
  useEffect(() => {
    const style = document.createElement("style");
    style.textContent = INBOX_CSS;
    document.head.appendChild(style);
    // A link opened in a tab already on the inbox changes only the fragment.
    const follow = () => setLink(linkPage());
    window.addEventListener("hashchange", follow);
    return () => window.removeEventListener("hashchange", follow);
  }, []);
  const signedIn = (c: Credentials) => {
    saveCredentials(c);
    setNotice(undefined);
    setCreds(c);
  };
  const signedOut = (why?: string) => {
    saveCredentials(undefined);
    setNotice(why);
    setCreds(undefined);
  };
  if (link?.page === "accept") {
    return (
      <AcceptInvitation
        project={link.project}
        token={link.token}
        onSignedIn={(c) => {
          leaveLinkPage();
          setLink(undefined);
          rememberSignIn("member");
          signedIn(c);
        }}
      />
    );
  }
  if (link?.page === "reset") {
    return (
      <ResetPassword
        project={link.project}
        token={link.token}
        onDone={() => {
          leaveLinkPage();
          setLink(undefined);
          rememberSignIn("member");
          signedOut("Your password is changed. Sign in with it.");
        }}
      />
    );
  }
  if (!creds) {
    return <SignIn notice={notice} onSignedIn={signedIn} />;
  }
  return (
    <Inbox
      creds={creds}
      onSignOut={signedOut}
    />
  );
}

/** The shape every sign-in page shares: a title, its fields, the error of the last try, and
 * a submit button that says when it is busy. `run` throws to show `failed(err)`. */
function SignInForm({
  id,
  title,
  submit,
  busy: busyLabel,
  run,
  failed = serverMessage,
  children,
  after,
}: {
  id: string;
  title: string;
  submit: string;
  busy: string;
  run: () => Promise<void>;
  failed?: (err: unknown) => string;
  children: ComponentChildren;
  /** Below the submit button: other ways in, hints. */
  after?: ComponentChildren;
}) {
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const onSubmit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await run();
    } catch (err) {
      setError(failed(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin">
      <form onSubmit={onSubmit} aria-labelledby={id}>
        <h1 id={id}>{title}</h1>
        {children}
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? busyLabel : submit}
        </button>
        {after}
      </form>
    </main>
  );
}

/** What the server said, for a refusal; a plain retry hint when it did not answer. */
function serverMessage(err: unknown): string {
  return err instanceof ApiError && err.status < 500 ? err.message : "The server did not answer. Try again.";
}

function AcceptInvitation({ project, token, onSignedIn }: { project: string; token: string; onSignedIn: (c: Credentials) => void }) {
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const run = async () => {
    const creds = await acceptInvitation(project, token, name.trim(), password);
    askForNotifications();
    onSignedIn(creds);
  };
  return (
    <SignInForm id="accept-title" title={`Join ${project}`} submit="Join and sign in" busy="Joining…" run={run}>
      <p class="hint">You were invited to answer this project's tickets. Choose the name your visitors and team will see, and a password.</p>
      <label>
        Your name
        <input required maxLength={100} value={name} autoComplete="name" onInput={(e) => setName((e.target as HTMLInputElement).value)} />
      </label>
      <label>
        Password
        <input type="password" required minLength={10} autoComplete="new-password" value={password} onInput={(e) => setPassword((e.target as HTMLInputElement).value)} />
      </label>
      <p class="hint">At least 10 characters, of two kinds or more (lower case, upper case, digits, others).</p>
    </SignInForm>
  );
}

function ResetPassword({ project, token, onDone }: { project: string; token: string; onDone: () => void }) {
  const [password, setPassword] = useState("");
  const run = async () => {
    await completeReset(project, token, password);
    onDone();
  };
  return (
    <SignInForm id="reset-title" title="A new password" submit="Set the password" busy="Saving…" run={run}>
      <label>
        New password
        <input type="password" required minLength={10} autoComplete="new-password" value={password} onInput={(e) => setPassword((e.target as HTMLInputElement).value)} />
      </label>
      <p class="hint">At least 10 characters, of two kinds or more. Every device signed in with the old one is signed out.</p>
    </SignInForm>
  );
}

/** Asked on the click, as browsers require: notifications for new messages later. */
function askForNotifications() {
  if ("Notification" in window && Notification.permission === "default") {
    void Notification.requestPermission();
  }
}

const SIGN_IN_MODE = "fleety:inbox-sign-in";

/** The way this browser signed in last; the admin key until a member has signed in here. */
function lastSignIn(): "member" | "key" {
  try {
    return localStorage.getItem(SIGN_IN_MODE) === "member" ? "member" : "key";
  } catch {
    return "key";
  }
}

function rememberSignIn(mode: "member" | "key") {
  try {
    localStorage.setItem(SIGN_IN_MODE, mode);
  } catch {
    // Storage refused: the admin key's form comes first next time.
  }
}

function SignIn({ notice, onSignedIn }: { notice?: string; onSignedIn: (c: Credentials) => void }) {
  const [mode, setMode] = useState(lastSignIn);
  const done = (c: Credentials) => {
    rememberSignIn(c.csrf ? "member" : "key");
    onSignedIn(c);
  };
  return mode === "key" ? (
    <KeySignIn onSignedIn={done} onMember={() => setMode("member")} />
  ) : (
    <MemberSignIn notice={notice} onSignedIn={done} onKey={() => setMode("key")} />
  );
}

function MemberSignIn({ notice, onSignedIn, onKey }: { notice?: string; onSignedIn: (c: Credentials) => void; onKey: () => void }) {
  const [project, setProject] = useState("");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [forgot, setForgot] = useState<string>();
  // The password was right and the member has a second factor: the code comes next.
  const [step, setStep] = useState<SecondFactor>();
  const [code, setCode] = useState("");
  if (step) {
    const run = async () => {
      const creds = await signInSecondFactor(step, code);
      askForNotifications();
      onSignedIn(creds);
    };
    const failed = (err: unknown) => {
      const status = err instanceof ApiError ? err.status : 0;
      if (status === 429) return `Too many failed attempts. Try again in ${(err as ApiError).retryAfter ?? 30} seconds.`;
      if (status === 401 && (err as ApiError).message !== "wrong code") {
        setStep(undefined);
        setCode("");
        return "That sign-in expired. Sign in again.";
      }
      return status === 401 ? "That code is not right." : "The server did not answer. Try again.";
    };
    return (
      <SignInForm
        id="signin-title"
        title="Fleety inbox"
        submit="Sign in"
        busy="Signing in…"
        run={run}
        failed={failed}
        after={
          <button
            type="button"
            class="link"
            onClick={() => {
              setStep(undefined);
              setCode("");
            }}
          >
            Start again
          </button>
        }
      >
        <label>
          Code from your authenticator app, or a recovery code
          <input value={code} required autoFocus autoComplete="one-time-code" maxLength={64} onInput={(e) => setCode((e.target as HTMLInputElement).value)} />
        </label>
      </SignInForm>
    );
  }
  const run = async () => {
    const signed = await signIn(project.trim(), email.trim(), password);
    if ("challenge" in signed) {
      setPassword("");
      setStep(signed);
      return;
    }
    askForNotifications();
    onSignedIn(signed);
  };
  const failed = (err: unknown) => {
    const status = err instanceof ApiError ? err.status : 0;
    return status === 429
      ? `Too many failed attempts. Try again in ${(err as ApiError).retryAfter ?? 30} seconds.`
      : status === 401 || status === 404
        ? "That email and password do not match."
        : "The server did not answer. Try again.";
  };
  return (
    <SignInForm id="signin-title" title="Fleety inbox" submit="Sign in" busy="Signing in…" run={run} failed={failed} after={
        <>
            <button
              type="button"
              class="link"
              onClick={async () => {
                if (!project.trim() || !email.trim()) {
                  setForgot("Type the project id and your email first.");
                  return;
                }
                await requestReset(project.trim(), email.trim()).catch(() => undefined);
                setForgot("Asked. Until this server sends email, an owner or admin of the project gives you a reset link from the members page.");
              }}
            >
              Forgot your password?
            </button>
            {forgot && <p class="hint">{forgot}</p>}
            <button type="button" class="link" onClick={onKey}>
              Use the project's admin key instead
            </button>
        </>
      }>
      {notice && (
        <p class="notice" role="status">
          {notice}
        </p>
      )}
      <label>
        Project id
        <input value={project} required onInput={(e) => setProject((e.target as HTMLInputElement).value)} />
      </label>
      <label>
        Email
        <input type="email" value={email} required autoComplete="username" onInput={(e) => setEmail((e.target as HTMLInputElement).value)} />
      </label>
      <label>
        Password
        <input type="password" value={password} required autoComplete="current-password" onInput={(e) => setPassword((e.target as HTMLInputElement).value)} />
      </label>
    </SignInForm>
  );
}

function KeySignIn({ onSignedIn, onMember }: { onSignedIn: (c: Credentials) => void; onMember: () => void }) {
  const [project, setProject] = useState("");
  const [key, setKey] = useState("");
  const [name, setName] = useState("");
  const run = async () => {
    const creds = { project: project.trim(), key: key.trim(), name: name.trim() || "Agent" };
    await new Api(creds).project();
    askForNotifications();
    onSignedIn(creds);
  };
  const failed = (err: unknown) =>
    err instanceof ApiError && err.status < 500 ? "That project id and admin key do not match." : "The server did not answer. Try again.";
  return (
    <SignInForm id="signin-title" title="Fleety inbox" submit="Sign in" busy="Signing in…" run={run} failed={failed} after={
        <>
            <p class="hint">The key stays in this tab only.</p>
            <button type="button" class="link" onClick={onMember}>
              Use your email and password instead
            </button>
        </>
      }>
      <label>
        Project id
        <input value={project} required autoComplete="username" onInput={(e) => setProject((e.target as HTMLInputElement).value)} />
      </label>
      <label>
        Admin key
        <input type="password" value={key} required autoComplete="current-password" onInput={(e) => setKey((e.target as HTMLInputElement).value)} />
      </label>
      <label>
        Your name
        <input value={name} placeholder="Shown on your notes and assignments" onInput={(e) => setName((e.target as HTMLInputElement).value)} />
      </label>
    </SignInForm>
  );
}

export type Listener = (event: FeedEvent) => void;

const SIGNED_OUT = "You were signed out: your session ended (signed out elsewhere, a new password, or your access changed).";

function Inbox({ creds, onSignOut }: { creds: Credentials; onSignOut: (why?: string) => void }) {
  const api = useMemo(() => new Api(creds, () => onSignOut(SIGNED_OUT)), [creds]);
  const [link] = useState(() => emailLink(creds.project));
  const [view, setView] = useState<"tickets" | "kb" | "settings" | "members" | "audit" | "account">(link.account && creds.memberId ? "account" : "tickets");
  // Agents answer tickets; the settings, the team and the audit trail are their owners' and
  // admins'.
  const manages = api.role !== "agent";
  const shared = manages ? (["tickets", "kb", "settings", "members", "audit"] as const) : (["tickets", "kb"] as const);
  // A signed-in member has an account of their own; the admin key is nobody's.
  const views = creds.memberId ? [...shared, "account" as const] : shared;
  const label = { tickets: "Tickets", kb: "Knowledge base", settings: "Settings", members: "Members", audit: "Audit", account: "Account" } as const;
  const [feedState, setFeedState] = useState<FeedState>("connecting");
  const [unread, setUnread] = useState<Record<string, number>>({});
  const [resumes, setResumes] = useState(0);
  const listeners = useRef(new Set<Listener>());
  const open = useRef<string | undefined>(undefined);
  // Who each ticket is assigned to, as far as the feed told or a read found: a reply alerts
  // only the agent the ticket is assigned to.
  const assignees = useRef(new Map<string, string | null>());
  const assignee = async (slug: string): Promise<string | null> => {
    const known = assignees.current.get(slug);
    if (known !== undefined) return known;
    const t = await api.ticket(slug);
    assignees.current.set(slug, t.assignee ?? null);
    return t.assignee ?? null;
  };
  const feed = useMemo(
    () =>
      new Feed(
        api,
        (event) => {
          for (const l of listeners.current) l(event);
          if (event.type === "new_message" && event.ticket && event.payload.author === "user") {
            const slug = event.ticket;
            if (slug !== open.current || document.hidden) {
              setUnread((u) => ({ ...u, [slug]: (u[slug] ?? 0) + 1 }));
            }
            if (document.visibilityState === "hidden") {
              const content = String(event.payload.content ?? "");
              void assignee(slug)
                .then((who) => who === creds.name && alertAgent(`New reply on a ticket assigned to you (${slug})`, content))
                .catch(() => undefined);
            }
          }
          if (event.type === "ticket_created" && event.ticket) {
            assignees.current.set(event.ticket, event.payload.assignee ?? null);
            alertAgent("New ticket", String(event.payload.title ?? ""));
          }
          if (event.type === "assigned" && event.ticket) {
            assignees.current.set(event.ticket, (event.payload.assignee as string | null) ?? null);
          }
        },
        (state, resumed) => {
          setFeedState(state);
          // Back after a drop: reload what is on screen, so nothing sent meanwhile is missed.
          if (resumed) setResumes((n) => n + 1);
        },
        () => onSignOut(SIGNED_OUT),
      ),
    [api],
  );
  useEffect(() => {
    feed.start();
    return () => feed.stop();
  }, [feed]);

  const total = Object.values(unread).reduce((a, b) => a + b, 0);
  useEffect(() => {
    document.title = total > 0 ? `(${total}) Fleety inbox` : "Fleety inbox";
  }, [total]);

  const subscribe = (l: Listener) => {
    listeners.current.add(l);
    return () => listeners.current.delete(l);
  };

  return (
    <div class="inbox">
      <header class="bar">
        <strong>Fleety inbox</strong>
        <span class="project">{creds.project}</span>
        <nav aria-label="Views">
          {views.map((v) => (
            <button type="button" aria-current={view === v ? "page" : undefined} onClick={() => setView(v)} key={v}>
              {v === "tickets" && total ? `Tickets (${total})` : label[v]}
            </button>
          ))}
        </nav>
        <span class={`feed ${feedState}`} role="status">
          {feedState === "live" ? "Live" : feedState === "connecting" ? "Connecting…" : "Reconnecting…"}
        </span>
        <AlertSettings />
        <span class="who">
          {creds.name}
          {creds.role && <span class="sub"> · {creds.role}</span>}
        </span>
        <button
          type="button"
          class="link"
          onClick={() => {
            // Signed out here whatever the server says: the session ends there, or its cookie
            // expires.
            feed.stop();
            api.signOut().catch(() => undefined).finally(() => onSignOut());
          }}
        >
          Sign out
        </button>
      </header>
      {view === "tickets" && (
        <Tickets
          api={api}
          feed={feed}
          subscribe={subscribe}
          resumes={resumes}
          initial={link.ticket}
          onOpen={(slug) => {
            open.current = slug;
            setUnread((u) => {
              const { [slug]: _, ...rest } = u;
              return rest;
            });
          }}
        />
      )}
      {view === "kb" && <KnowledgeBase api={api} />}
      {view === "settings" && manages && <Settings api={api} />}
      {view === "members" && manages && <Members api={api} />}
      {view === "audit" && manages && <Audit api={api} />}
      {view === "account" && creds.memberId && <Account api={api} />}
    </div>
  );
}

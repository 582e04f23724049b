// What the loader hands the widget's UI when it mounts it: the page's settings, the shadow
// root it draws in, and a way back to the launcher. Types only: the loader stays small.

export type Command = [string, ...unknown[]];

export interface Theme {
  color?: string;
  font?: string;
  radius?: string;
  position?: "left" | "right";
}

/** Who the visitor is, as the page knows them (`setVisitor`), checked as the server checks it. */
export interface Visitor {
  name?: string;
  email?: string;
}

export interface Listener {
  event: string;
  fn: (payload: unknown) => void;
}

/** What the UI offers the loader once mounted. */
export interface Ui {
  opened(): void;
  closed(): void;
  setLocale(locale: string): void;
  reset(): void;
  /** Who the page says the visitor is; `undefined` when nobody is signed in. */
  identify(identity: Identity | undefined): void;
  /** Shows the conversation of ticket `slug` (the link of a visitor's email). */
  openTicket(slug: string): void;
}

/** What `Fleety.push(["identify", {...}])` carries: `user_id` with `user_hash`, or `token`,
 * and optionally `email`, `name` and `attributes`. */
export interface Identity {
  user_id?: string;
  user_hash?: string;
  token?: string;
  email?: string;
  name?: string;
  attributes?: Record<string, string>;
}

export interface Shell {
  /** The Fleety server's origin, from the script's own URL. */
  base: string;
  project: string;
  root: ShadowRoot;
  /** Where the UI draws its panel; hidden while the widget is closed. */
  panel: HTMLElement;
  launcher: HTMLButtonElement;
  readonly locale: string;
  /** Who the visitor is, when the page said: sent when the conversation opens a ticket. */
  readonly visitor: Visitor | undefined;
  setBadge(count: number): void;
  label(count: number): string;
  /** Calls the page's listeners registered with `Fleety.push(['on', event, fn])`. */
  emit(event: string, payload: unknown): void;
  close(): void;
  ui: Ui | undefined;
}

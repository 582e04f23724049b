// The project's live feed for the inbox: every ticket event, over one WebSocket opened with a
// fresh one-minute feed token each time, reconnected with backoff and jitter. Events the
// inbox missed while disconnected are caught up by reloading what is on screen. A member's
// socket is closed with 4401 the moment their session ends, and the inbox signs out.

import type { components } from "../shared/api-types";
import type { Api } from "./api";

/** One frame of the feed socket, as the API's document describes it. */
type Frame = components["schemas"]["FeedEvent"];
/** A ticket's event: every frame but the feed's own `subscribed`, which the feed keeps. */
export type FeedEvent = Exclude<Frame, { type: "subscribed" }>;

/** The close code of a member's feed whose session ended. */
const SIGNED_OUT = 4401;

export type FeedState = "connecting" | "live" | "reconnecting";

export class Feed {
  private socket?: WebSocket;
  private attempts = 0;
  private timer?: ReturnType<typeof setTimeout>;
  private stopped = false;

  constructor(
    private readonly api: Api,
    private readonly onEvent: (event: FeedEvent) => void,
    private readonly onState: (state: FeedState, resumed: boolean) => void,
    /** The member's session ended (signed out elsewhere, deactivated, a new password): the
     * server closed the socket with 4401 at once. */
    private readonly onSignedOut: () => void = () => undefined,
  ) {}

  start() {
    this.stopped = false;
    void this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.socket?.close(1000);
    this.socket = undefined;
  }

  /** Tells the ticket's visitor that an agent is typing. */
  typing(slug: string) {
    if (this.socket?.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify({ type: "typing", ticket: slug }));
    }
  }

  private async open() {
    const resumed = this.attempts > 0;
    this.onState(resumed ? "reconnecting" : "connecting", false);
    let url: string;
    try {
      url = (await this.api.feedToken()).url;
    } catch {
      return this.retry();
    }
    if (this.stopped) return;
    const socket = new WebSocket(`${location.origin.replace(/^http/, "ws")}${url}`);
    this.socket = socket;
    socket.onmessage = (message) => {
      const event = JSON.parse(String(message.data)) as Frame;
      if (event.type === "subscribed") {
        this.attempts = 0;
        this.onState("live", resumed);
        return;
      }
      this.onEvent(event);
    };
    socket.onclose = (closed) => {
      if (this.socket !== socket) return;
      this.socket = undefined;
      if (closed.code === SIGNED_OUT) {
        this.stopped = true;
        this.onSignedOut();
        return;
      }
      if (!this.stopped) this.retry();
    };
  }

  private retry() {
    this.attempts += 1;
    this.onState("reconnecting", false);
    const ceiling = Math.min(30_000, 500 * 2 ** Math.min(this.attempts, 10));
    this.timer = setTimeout(() => void this.open(), Math.round(Math.random() * ceiling));
  }
}

// The inbox's styles: a plain two-pane layout that follows the agent's dark-mode preference.

export const INBOX_CSS = `
:root {
  --bg: #f6f7f9; --panel: #fff; --fg: #1d1d1f; --muted: #5f636a; --line: #dfe2e6;
  --accent: #3b5bdb; --note: #fff8db; --note-line: #f0d264; --danger: #c92a2a;
  color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #121316; --panel: #1c1d21; --fg: #ececef; --muted: #a3a7ae; --line: #2e3036;
    --accent: #748ffc; --note: #3a3214; --note-line: #7d6a1f; --danger: #ff8787; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--fg); }
button, input, select, textarea { font: inherit; color: inherit; }
button { cursor: pointer; border: 1px solid var(--line); background: var(--panel); border-radius: 8px; padding: 6px 12px; }
button[type="submit"], .new { background: var(--accent); border-color: var(--accent); color: #fff; }
button[disabled] { opacity: 0.5; cursor: default; }
button.link { border: none; background: none; color: var(--accent); text-decoration: underline; }
button.danger { color: var(--danger); border-color: var(--danger); background: var(--panel); }
input, select, textarea { border: 1px solid var(--line); border-radius: 8px; padding: 7px 10px; background: var(--panel); }
:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.error { color: var(--danger); }
.hint, .sub, .empty { color: var(--muted); font-size: 13px; }
.signin { min-height: 100vh; display: grid; place-items: center; }
.signin form { width: min(380px, 92vw); background: var(--panel); padding: 28px; border-radius: 14px; border: 1px solid var(--line); display: flex; flex-direction: column; gap: 14px; }
.signin h1 { margin: 0 0 4px; font-size: 22px; }
.notice { margin: 0; padding: 10px 12px; border-radius: 8px; background: #fff7e0; border: 1px solid #f0d68a; color: #5c4400; font-size: 14px; }
.link-out { display: flex; gap: 8px; align-items: center; }
.link-out input { flex: 1; font-family: ui-monospace, monospace; font-size: 12px; }
label { display: flex; flex-direction: column; gap: 4px; font-weight: 600; }
label.check, .reply-bar label, .actions label { flex-direction: row; align-items: center; gap: 6px; font-weight: normal; }
.inbox { height: 100vh; display: flex; flex-direction: column; }
.bar { display: flex; align-items: center; gap: 14px; padding: 10px 16px; background: var(--panel); border-bottom: 1px solid var(--line); }
.bar nav { display: flex; gap: 6px; margin-left: 12px; }
.bar nav button[aria-current="page"] { background: var(--accent); border-color: var(--accent); color: #fff; }
.bar .project { color: var(--muted); }
.bar .feed { margin-left: auto; font-size: 12px; padding: 2px 10px; border-radius: 10px; background: #fff3bf; color: #5c4400; }
.bar .feed.live { background: #d3f9d8; color: #1b5e20; }
.tickets, .kb { flex: 1; display: grid; grid-template-columns: minmax(260px, 340px) 1fr; min-height: 0; }
.list { border-right: 1px solid var(--line); overflow-y: auto; background: var(--panel); padding: 10px; display: flex; flex-direction: column; gap: 8px; }
.filters { display: flex; gap: 6px; }
.filters input { flex: 1; min-width: 0; }
.list ul { list-style: none; margin: 0; padding: 0; display: flex; flex-direction: column; gap: 4px; }
.ticket { width: 100%; text-align: left; display: grid; grid-template-columns: minmax(0, 1fr) auto; gap: 2px 8px; border: 1px solid transparent; background: none; padding: 8px 10px; }
.ticket:hover { background: var(--bg); }
.ticket.selected { border-color: var(--accent); background: var(--bg); }
.ticket.focused:not(.selected) { border-color: var(--line); }
.ticket .title { font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.ticket .when { grid-column: 2; color: var(--muted); font-size: 12px; white-space: nowrap; }
.ticket .preview { grid-column: 1; color: var(--muted); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; font-size: 13px; }
.ticket.has-unread .preview { color: var(--fg); font-weight: 600; }
.ticket .sub { grid-column: 1; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.unread { grid-column: 2; justify-self: end; min-width: 22px; height: 22px; border-radius: 11px; background: #c2255c; color: #fff; font-size: 12px; font-weight: 700; text-align: center; line-height: 22px; padding: 0 6px; }
.filters .keys { padding: 6px 10px; }
.views { display: flex; gap: 6px; align-items: center; justify-content: space-between; }
.view-tabs { display: flex; gap: 0; }
.view-tabs button { border-radius: 0; padding: 4px 10px; }
.view-tabs button:first-child { border-radius: 6px 0 0 6px; }
.view-tabs button:last-child { border-radius: 0 6px 6px 0; }
.view-tabs button[aria-pressed="true"] { background: var(--accent); color: #fff; border-color: var(--accent); }
.views select { flex: 1; min-width: 0; }
.overlay { position: fixed; inset: 0; background: rgb(0 0 0 / 0.35); display: grid; place-items: center; z-index: 10; }
.help { background: var(--panel); border: 1px solid var(--line); border-radius: 14px; padding: 20px 24px; width: min(360px, 92vw); display: flex; flex-direction: column; gap: 10px; }
.help h2 { margin: 0; font-size: 17px; }
.help dl { margin: 0; display: flex; flex-direction: column; gap: 6px; }
.help dl div { display: flex; gap: 12px; align-items: baseline; }
.help dt { min-width: 56px; }
.help dd { margin: 0; }
kbd { font-family: ui-monospace, monospace; font-size: 12px; padding: 1px 6px; border: 1px solid var(--line); border-bottom-width: 2px; border-radius: 4px; background: var(--bg); }
.help button { align-self: flex-end; }
.status { font-size: 11px; padding: 0 6px; border-radius: 8px; background: var(--bg); border: 1px solid var(--line); }
.status.open { color: #1b5e20; } .status.pending { color: #8a5a00; } .status.resolved { color: #1c4f9c; } .status.closed { color: var(--muted); }
.more { align-self: center; }
.detail { overflow-y: auto; padding: 16px 22px; display: flex; flex-direction: column; gap: 12px; min-height: 0; }
.detail.empty { display: grid; place-items: center; color: var(--muted); }
.ticket-head { display: flex; justify-content: space-between; gap: 16px; flex-wrap: wrap; }
.ticket-head h1 { margin: 0; font-size: 20px; }
.actions { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; }
.assignee { color: var(--muted); }
.alerts { position: relative; }
.alert-settings { position: absolute; inset-inline-end: 0; top: 100%; z-index: 5; width: 280px; padding: 10px 12px; background: var(--panel); border: 1px solid var(--line); border-radius: 8px; box-shadow: 0 6px 20px rgba(0, 0, 0, 0.15); display: flex; flex-direction: column; gap: 6px; font-size: 13px; }
.alert-settings .hint { margin: 0; }
.notice.blocked { margin: 0; padding: 6px 8px; border-radius: 6px; background: #fff4e5; color: #6b3d00; }
.csat { color: #8a5a00; letter-spacing: 1px; font-size: 12px; white-space: nowrap; }
@media (prefers-color-scheme: dark) { .csat { color: #f0c060; } }
.ticket .csat { grid-column: 1; }
.contact-card { align-self: stretch; margin: 0; padding: 10px 14px; border: 1px solid var(--line); border-radius: 10px; font-size: 13px; display: flex; flex-direction: column; gap: 4px; }
.contact-card p { margin: 0; }
.contact-name { display: flex; gap: 8px; align-items: center; font-size: 14px; }
.contact-card .verified { color: #1a7f37; border: 1px solid currentColor; border-radius: 10px; padding: 0 6px; font-size: 12px; }
.contact-email, .contact-id { color: var(--muted); }
.contact-tickets ul { list-style: none; margin: 4px 0 0; padding: 0; display: flex; flex-direction: column; gap: 2px; }
.contact-card .link { all: unset; cursor: pointer; color: var(--accent); text-decoration: underline; }
.contact-card .link:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
.csat-given { margin: 0 0 8px; padding: 6px 10px; border: 1px solid var(--line); border-radius: 8px; font-size: 13px; }
.csat-given q { margin-inline-start: 6px; font-style: italic; }
.tags, .ticket-tags, .tag-filter { display: flex; flex-wrap: wrap; align-items: center; gap: 4px; margin: 0; }
.ticket .tags { grid-column: 1; }
.tag { display: inline-flex; align-items: center; font-size: 11px; padding: 0 6px; border-radius: 8px; background: var(--bg); border: 1px solid var(--line); }
.tag button { border: none; background: none; padding: 0 2px; font-size: 11px; }
.ticket-tags input { width: 130px; }
.description { margin: 0; white-space: pre-wrap; }
.transcript { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 8px 12px; }
.transcript summary { cursor: pointer; font-weight: 600; }
.turn { margin: 6px 0; }
.feedback { font-size: 12px; margin-left: 6px; padding: 0 6px; border-radius: 8px; border: 1px solid var(--line); white-space: nowrap; }
.figures { display: flex; flex-wrap: wrap; gap: 10px 24px; margin: 8px 0 0; }
.figures div { display: flex; flex-direction: column; }
.figures dt { font-size: 12px; color: var(--muted); }
.figures dd { margin: 0; font-size: 20px; font-weight: 600; }
.thread { flex: 1; display: flex; flex-direction: column; gap: 8px; min-height: 160px; overflow-y: auto; }
.msg, .note { max-width: 78%; padding: 8px 12px; border-radius: 12px; background: var(--panel); border: 1px solid var(--line); }
.msg p, .note p { margin: 2px 0 0; white-space: pre-wrap; word-break: break-word; }
.msg.admin { align-self: flex-end; border-color: var(--accent); }
.msg .body { margin-top: 2px; white-space: pre-wrap; word-break: break-word; }
.msg .body p, .msg .body ul, .msg .body ol { margin: 0; }
.msg .body > * + * { margin-top: 6px; }
.msg .body ul, .msg .body ol { padding-inline-start: 20px; }
.msg .body code { font-family: ui-monospace, monospace; font-size: 0.9em; padding: 0 4px; border-radius: 4px; background: var(--bg); border: 1px solid var(--line); }
.msg .body a { color: var(--accent); }
.note { align-self: flex-end; background: var(--note); border-color: var(--note-line); }
.who { font-size: 12px; color: var(--muted); }
.event { align-self: center; margin: 0; font-size: 12px; color: var(--muted); text-align: center; }
.older { align-self: center; margin: 0; }
.typing { color: var(--muted); font-style: italic; margin: 0; min-height: 1.45em; }
.reply { display: flex; flex-direction: column; gap: 6px; }
.reply textarea { width: 100%; resize: vertical; }
.reply.note-mode textarea { background: var(--note); border-color: var(--note-line); }
.reply-bar { display: flex; justify-content: space-between; align-items: center; }
.article { display: flex; flex-direction: column; gap: 12px; max-width: 760px; }
.article h1 { margin: 0; font-size: 20px; }
.article textarea { width: 100%; }
.row { display: flex; gap: 8px; }
.row .grow { flex: 1; }
.settings { overflow-y: auto; padding: 16px 22px; display: flex; flex-direction: column; gap: 16px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 12px; padding: 16px 20px; max-width: 900px; }
.card h2 { margin: 0 0 4px; font-size: 17px; }
.card form { display: flex; flex-direction: column; gap: 10px; }
fieldset.plain { border: 0; padding: 0; margin: 0; min-width: 0; display: flex; flex-direction: column; gap: 10px; }
.card textarea { width: 100%; }
table.members { width: 100%; border-collapse: collapse; margin-top: 8px; }
table.members th, table.members td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); }
.card.audit { max-width: 1200px; }
.audit-filters { flex-direction: row !important; flex-wrap: wrap; gap: 12px !important; align-items: end; margin-top: 8px; }
.audit-filters .field { display: flex; flex-direction: column; gap: 4px; }
.audit-filters label { font-size: 13px; color: var(--muted); }
.audit-filters select, .audit-filters input { height: 36px; box-sizing: border-box; }
table.audit-log { font-size: 13px; }
table.audit-log td { vertical-align: top; }
table.audit-log .time, table.audit-log .ip { white-space: nowrap; color: var(--muted); font-variant-numeric: tabular-nums; }
table.audit-log code { font-size: 12px; }
table.audit-log .target { display: block; font-weight: 600; }
table.audit-log .change { display: block; color: var(--muted); }
fieldset { border: 1px solid var(--line); border-radius: 8px; display: flex; flex-wrap: wrap; gap: 6px 16px; }
.hooks { list-style: none; padding: 0; display: flex; flex-direction: column; gap: 10px; }
.hook-row { display: flex; align-items: center; gap: 8px; flex-wrap: wrap; }
.hook-row .url { font-family: ui-monospace, monospace; font-weight: 600; }
.secret code { background: var(--note); padding: 2px 6px; border-radius: 4px; word-break: break-all; }
.log-bar { display: flex; gap: 8px; align-items: center; margin-top: 6px; }
.deliveries { width: 100%; border-collapse: collapse; margin-top: 6px; font-size: 13px; }
.counter { float: right; color: var(--muted); font-size: 12px; }
.counter.over { color: var(--danger); font-weight: 700; }
.unanswered { margin: 16px 0; }
.unanswered ul { list-style: none; padding: 0; display: flex; flex-direction: column; gap: 6px; }
.unanswered li { display: flex; align-items: center; gap: 8px; flex-wrap: wrap; }
.unanswered .count { min-width: 36px; font-weight: 700; }
.unanswered .title { flex: 1; }
.canned-picker { border: 1px solid var(--accent); border-radius: 8px; background: var(--panel); padding: 4px; }
.canned-picker ul { list-style: none; margin: 0; padding: 0; max-height: 220px; overflow-y: auto; }
.canned-picker li { padding: 6px 8px; border-radius: 6px; cursor: pointer; display: grid; grid-template-columns: auto 1fr; gap: 0 8px; }
.canned-picker li.active { background: #3b5bdb; color: #fff; }
.canned-picker li.active .preview { color: inherit; }
.canned-picker .shortcut { font-family: ui-monospace, monospace; font-weight: 700; }
.canned-picker .preview { grid-column: 1 / span 2; color: var(--muted); font-size: 12px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.canned-picker .hint { margin: 4px 8px; }
.canned-list { list-style: none; padding: 0; display: flex; flex-direction: column; gap: 10px; }
.canned-list .sub { margin: 2px 0 0; white-space: pre-wrap; }
.mail { font-size: 11px; padding: 0 6px; border-radius: 8px; border: 1px solid currentColor; }
.mail.sent { color: #1a7f37; } .mail.pending { color: #8a5a00; } .mail.failed, .mail.given_up { color: #b42318; }
table.outbox .change { display: block; }
.ticket-emails { list-style: none; margin: 0; padding: 0; display: flex; flex-direction: column; gap: 4px; }
.deliveries th, .deliveries td { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line); }
@media (max-width: 760px) {
  .tickets, .kb { grid-template-columns: 1fr; }
  .list { max-height: 40vh; border-right: none; border-bottom: 1px solid var(--line); }
  .bar { flex-wrap: wrap; }
}
`;

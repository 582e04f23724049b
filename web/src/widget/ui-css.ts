// The panel's styles, inside the shadow root. Colours, font and corner radius come from the
// host page's theme (`--fleety-*` custom properties); logical properties make right-to-left
// languages mirror the layout; the visitor's dark-mode preference is followed.

export const PANEL_CSS = `
.dialog {
  --bg: #ffffff;
  --fg: #1d1d1f;
  --muted: #6b6f76;
  --line: #e3e5e8;
  --bubble: #f1f3f5;
  --accent: var(--fleety-accent, #3b5bdb);
  --radius: var(--fleety-radius, 16px);
  display: flex;
  flex-direction: column;
  width: min(380px, calc(100vw - 40px));
  height: min(600px, calc(100vh - 120px));
  background: var(--bg);
  color: var(--fg);
  border-radius: var(--radius);
  box-shadow: 0 12px 40px rgba(0, 0, 0, 0.25);
  overflow: hidden;
  font: inherit;
  text-align: start;
}
@media (prefers-color-scheme: dark) {
  .dialog {
    --bg: #1c1d21;
    --fg: #ececef;
    --muted: #9a9ea6;
    --line: #2e3036;
    --bubble: #2a2c31;
  }
}
@media (max-width: 480px) {
  /* On a phone the open panel is the whole screen; its header's button closes it. */
  .dialog { width: 100vw; height: 100vh; height: 100dvh; border-radius: 0; box-shadow: none; }
}
button, input, textarea { font: inherit; color: inherit; }
header {
  display: flex;
  align-items: center;
  justify-content: space-between;
  gap: 8px;
  padding: 14px 16px;
  background: var(--accent);
  color: #fff;
}
header h2 { margin: 0; font-size: 17px; font-weight: 700; }
header p { margin: 2px 0 0; font-size: 13px; opacity: 0.9; }
.icon {
  all: unset;
  cursor: pointer;
  font-size: 26px;
  line-height: 1;
  padding: 2px 8px;
  border-radius: 8px;
}
.icon:focus-visible, button:focus-visible, textarea:focus-visible, input:focus-visible {
  outline: 2px solid var(--accent);
  outline-offset: 2px;
}
header .icon:focus-visible { outline-color: #fff; }
.tabs { display: flex; border-bottom: 1px solid var(--line); }
.tabs button {
  all: unset;
  flex: 1;
  text-align: center;
  padding: 10px;
  cursor: pointer;
  color: var(--muted);
  border-bottom: 2px solid transparent;
}
.tabs button:focus-visible { outline: 2px solid var(--accent); outline-offset: -2px; }
.tabs button[aria-selected="true"] { color: var(--fg); border-bottom-color: var(--accent); font-weight: 600; }
.banner {
  margin: 0;
  padding: 8px 16px;
  background: #fff3bf;
  color: #5c4400;
  font-size: 13px;
}
.log { flex: 1; overflow-y: auto; padding: 12px 16px; display: flex; flex-direction: column; gap: 10px; }
.message { display: flex; flex-direction: column; align-items: flex-start; max-width: 85%; }
.message.user { align-self: flex-end; align-items: flex-end; }
.who { font-size: 11px; color: var(--muted); margin: 0 4px 2px; }
.who .avatar { width: 16px; height: 16px; border-radius: 50%; vertical-align: middle; margin-right: 4px; object-fit: cover; }
.bubble {
  margin: 0;
  padding: 9px 12px;
  border-radius: 14px;
  background: var(--bubble);
  white-space: pre-wrap;
  word-break: break-word;
}
.bubble.user { background: var(--accent); color: #fff; }
.bubble p, .bubble ul, .bubble ol { margin: 0; }
.bubble > * + * { margin-top: 6px; }
.bubble ul, .bubble ol { padding-inline-start: 20px; }
.bubble code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.9em; padding: 0 4px; border-radius: 4px; background: rgb(127 127 127 / 0.18); }
.bubble a { color: inherit; text-decoration: underline; }
.bubble.admin { border: 1px solid var(--accent); }
.sources { margin: 4px 4px 0; font-size: 12px; color: var(--muted); }
.source {
  display: inline-block;
  margin-inline-start: 4px;
  padding: 1px 8px;
  border-radius: 10px;
  background: var(--bubble);
  color: var(--fg);
}
a.source { color: var(--accent); text-decoration: underline; }
.meta { font-size: 11px; color: var(--muted); margin: 2px 4px 0; }
.retry { all: unset; cursor: pointer; font-size: 11px; color: #c92a2a; margin: 2px 4px 0; }
.rating { display: flex; gap: 4px; margin: 2px 4px 0; }
.rate { all: unset; cursor: pointer; font-size: 13px; line-height: 1; padding: 3px 6px; border-radius: 10px; opacity: .55; border: 1px solid transparent; }
.rate:hover, .rate:focus-visible { opacity: 1; border-color: var(--muted); }
.rate[aria-pressed="true"] { opacity: 1; color: var(--accent); border-color: var(--accent); }
.rate svg { display: block; }
.rate.down svg { transform: rotate(180deg); }
.notice { align-self: center; margin: 0; font-size: 12px; color: var(--muted); text-align: center; }
.older { min-height: 18px; }
.older .link { all: unset; cursor: pointer; color: var(--accent); text-decoration: underline; }
.older .link:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
.typing { display: flex; gap: 4px; margin: 0; padding: 10px 12px; background: var(--bubble); border-radius: 14px; align-self: flex-start; }
.typing span { width: 6px; height: 6px; border-radius: 50%; background: var(--muted); animation: blink 1.2s infinite; }
.typing span:nth-child(2) { animation-delay: 0.2s; }
.typing span:nth-child(3) { animation-delay: 0.4s; }
@keyframes blink { 0%, 80%, 100% { opacity: 0.25; } 40% { opacity: 1; } }
@media (prefers-reduced-motion: reduce) { .typing span { animation: none; opacity: 0.7; } }
.composer { border-top: 1px solid var(--line); padding: 10px 12px; display: flex; flex-direction: column; gap: 8px; }
.human {
  all: unset;
  align-self: flex-start;
  cursor: pointer;
  font-size: 13px;
  padding: 5px 12px;
  border-radius: 14px;
  border: 1px solid var(--accent);
  color: var(--accent);
}
.human[disabled] { opacity: 0.5; cursor: default; }
.row { display: flex; gap: 8px; align-items: flex-end; }
textarea {
  flex: 1;
  /* 16 px at least: iOS zooms into a smaller field on focus. */
  font-size: 16px;
  resize: none;
  max-height: 120px;
  padding: 9px 12px;
  border: 1px solid var(--line);
  border-radius: 12px;
  background: var(--bg);
}
.send {
  all: unset;
  display: grid;
  place-items: center;
  width: 40px;
  height: 40px;
  border-radius: 50%;
  background: var(--accent);
  color: #fff;
  cursor: pointer;
}
.send[disabled] { opacity: 0.45; cursor: default; }
[dir="rtl"] .send { transform: scaleX(-1); }
.closed { padding: 12px 16px; border-top: 1px solid var(--line); color: var(--muted); text-align: center; display: flex; flex-direction: column; align-items: center; gap: 8px; }
.closed p { margin: 0; }
.restart { all: unset; cursor: pointer; padding: 8px 16px; border-radius: 16px; background: var(--accent); color: #fff; font-weight: 600; }
.restart:focus-visible, .human:focus-visible, .send:focus-visible, .rate:focus-visible, .retry:focus-visible, .search button:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
.survey { margin: 0; padding: 12px 16px; border-top: 1px solid var(--line); display: flex; flex-direction: column; gap: 8px; }
.survey .ask { margin: 0; font-weight: 600; }
.survey.thanks { color: var(--muted); font-size: 13px; }
.scores { display: flex; gap: 6px; }
.score { all: unset; cursor: pointer; flex: 1; text-align: center; padding: 8px 0; border: 1px solid var(--line); border-radius: 10px; font-weight: 600; }
.score[aria-checked="true"] { background: var(--accent); border-color: var(--accent); color: #fff; }
.survey .comment { font: inherit; font-size: 16px; padding: 8px 10px; border: 1px solid var(--line); border-radius: 10px; background: var(--bg); color: var(--fg); resize: none; }
.survey .actions { display: flex; justify-content: flex-end; gap: 8px; }
.skip { all: unset; cursor: pointer; padding: 6px 12px; color: var(--muted); text-decoration: underline; }
.send-rating { all: unset; cursor: pointer; padding: 6px 14px; border-radius: 14px; background: var(--accent); color: #fff; font-weight: 600; }
.send-rating[disabled] { opacity: 0.45; cursor: default; }
.score:focus-visible, .skip:focus-visible, .send-rating:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
.reply-email { margin: 0; padding: 8px 16px; border-top: 1px solid var(--line); display: flex; flex-direction: column; gap: 6px; font-size: 13px; }
.reply-email label { font-weight: 600; }
.reply-email .to { margin: 0; overflow-wrap: anywhere; }
.reply-email .unverified { color: var(--muted); }
.reply-email .row { align-items: center; }
.reply-email input { flex: 1; min-width: 0; font-size: 16px; padding: 6px 10px; border: 1px solid var(--line); border-radius: 10px; background: var(--bg); color: var(--fg); }
.reply-email input[aria-invalid="true"] { border-color: #c92a2a; }
.reply-email .problem { margin: 0; color: #c92a2a; }
.reply-email .actions { display: flex; gap: 12px; }
.reply-email .link { all: unset; cursor: pointer; align-self: flex-start; color: var(--accent); text-decoration: underline; }
.reply-email .link[disabled] { opacity: 0.5; cursor: default; }
.save-email { all: unset; cursor: pointer; padding: 6px 14px; border-radius: 10px; background: var(--accent); color: #fff; font-weight: 600; }
.save-email[disabled] { opacity: 0.45; cursor: default; }
.reply-email .link:focus-visible, .save-email:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
.email-said { margin: 0; color: var(--muted); }
.email-said:empty { display: none; }
.count { margin: 0; font-size: 12px; color: var(--muted); text-align: end; }
.count.over { color: #c92a2a; font-weight: 600; }
.earlier { display: flex; flex-direction: column; gap: 10px; }
.known ul { list-style: none; margin: 0; padding: 0; display: flex; flex-direction: column; gap: 6px; }
.known button { all: unset; box-sizing: border-box; cursor: pointer; display: flex; justify-content: space-between; gap: 8px; width: 100%; padding: 8px 12px; border: 1px solid var(--line); border-radius: 10px; }
.known button:hover { border-color: var(--accent); }
.known button:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
.known .title { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.known .state { color: var(--muted); font-size: 13px; flex: none; }
.earlier .message { max-width: 85%; }
.divider { border-top: 1px solid var(--line); padding-top: 8px; align-self: stretch; }
.help { flex: 1; overflow-y: auto; padding: 12px 16px; }
.search { display: flex; gap: 8px; }
.search input { flex: 1; padding: 8px 12px; border: 1px solid var(--line); border-radius: 10px; background: var(--bg); }
.search button {
  all: unset;
  cursor: pointer;
  padding: 8px 14px;
  border-radius: 10px;
  background: var(--accent);
  color: #fff;
}
.hits { list-style: none; margin: 12px 0 0; padding: 0; display: flex; flex-direction: column; gap: 10px; }
.hits li { padding: 10px 12px; border: 1px solid var(--line); border-radius: 12px; }
.hits p, .empty { margin: 4px 0 0; font-size: 13px; color: var(--muted); }
.hits button { all: unset; cursor: pointer; display: block; width: 100%; }
.hits button:focus-visible, .article .back:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; border-radius: 6px; }
.hits strong { color: var(--accent); }
.article h2 { font-size: 17px; margin: 10px 0 6px; }
.article p { margin: 0 0 10px; white-space: pre-wrap; word-break: break-word; font-size: 14px; line-height: 1.5; }
.article p.match { background: color-mix(in srgb, var(--accent) 14%, transparent); border-inline-start: 3px solid var(--accent); padding: 4px 8px; border-radius: 4px; outline: none; }
.article .back { all: unset; cursor: pointer; color: var(--accent); font-size: 13px; }
`;

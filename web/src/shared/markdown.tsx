// A small, safe subset of Markdown for messages, shared by the widget and the inbox: **bold**,
// *italics* (or _italics_), `inline code`, lists ("- ", "* " or "1. " at a line's start),
// [links](https://…) and bare http(s) addresses. It builds Preact elements from the text, so
// every piece of the message reaches the page as text or as an attribute Preact sets, never
// through innerHTML. A link opens in a new tab without access to the opener, and only http,
// https and mailto addresses become links; anything else stays text as written.

import type { ComponentChildren } from "preact";

/** The link schemes a message may carry: no javascript:, data: or other surprises. */
const SAFE = new Set(["http:", "https:", "mailto:"]);

/** `href` when it is an absolute http, https or mailto address, else undefined. */
export function safeHref(href: string): string | undefined {
  try {
    const url = new URL(href);
    return SAFE.has(url.protocol) ? url.href : undefined;
  } catch {
    return undefined;
  }
}

// In order: inline code, bold, italics (asterisks, or underscores not inside a word), a
// [label](address), a bare address. A bare address stops before trailing punctuation.
const INLINE =
  /`([^`\n]+)`|\*\*([^*\n](?:[^\n]*?[^*\n])?)\*\*|\*([^*\s](?:[^*\n]*?[^*\s])?)\*|(?<![\p{L}\p{N}_])_([^_\s](?:[^_\n]*?[^_\s])?)_(?![\p{L}\p{N}_])|\[([^\]\n]+)\]\(([^()\s]+)\)|((?:https?:\/\/|mailto:)[^\s<>"]*[^\s<>".,;:!?)\]'])/gu;

function link(href: string, label: ComponentChildren, key: number): ComponentChildren {
  return (
    <a key={key} href={href} target="_blank" rel="noopener noreferrer">
      {label}
    </a>
  );
}

/** Inline formatting of one piece of text; `links` is false inside a link's own label. */
function inline(text: string, links = true): ComponentChildren[] {
  const out: ComponentChildren[] = [];
  let at = 0;
  let key = 0;
  for (const m of text.matchAll(INLINE)) {
    const [whole, code, bold, star, under, label, target, bare] = m;
    const start = m.index ?? 0;
    let piece: ComponentChildren;
    if (code !== undefined) piece = <code key={key}>{code}</code>;
    else if (bold !== undefined) piece = <strong key={key}>{inline(bold, links)}</strong>;
    else if (star !== undefined || under !== undefined) piece = <em key={key}>{inline(star ?? under, links)}</em>;
    else if (label !== undefined) {
      const href = links ? safeHref(target) : undefined;
      // A refused address stays as the visitor wrote it, so nothing is hidden from the agent.
      piece = href ? link(href, inline(label, false), key) : whole;
    } else {
      const href = links ? safeHref(bare) : undefined;
      piece = href ? link(href, bare, key) : whole;
    }
    if (start > at) out.push(text.slice(at, start));
    out.push(piece);
    key++;
    at = start + whole.length;
  }
  if (at < text.length) out.push(text.slice(at));
  return out;
}

/** A message's text without its marks (bullets, bold, italics, code, links' addresses), for
 * places that show text only, like the inbox list's preview. The server's previews follow the
 * same rules. */
export function plainText(text: string): string {
  const strip = (piece: string): string =>
    piece.replace(INLINE, (whole, code, bold, star, under, label, _target, bare) => {
      if (code !== undefined) return code;
      if (bold !== undefined) return strip(bold);
      if (star !== undefined || under !== undefined) return strip(star ?? under);
      if (label !== undefined) return strip(label);
      return bare ?? whole;
    });
  return text
    .split("\n")
    .map((line) => strip((BULLET.exec(line) ?? NUMBER.exec(line))?.[1] ?? line))
    .join("\n");
}

const BULLET = /^\s{0,3}[-*]\s+(.*)$/;
const NUMBER = /^\s{0,3}\d{1,9}[.)]\s+(.*)$/;

/**
 * A message's text as elements: paragraphs (split at blank lines, single line breaks kept as
 * text for the container's `white-space: pre-wrap`) and lists, each with inline formatting.
 */
export function Markdown({ text }: { text: string }) {
  const blocks: ComponentChildren[] = [];
  let paragraph: string[] = [];
  let list: { ordered: boolean; items: string[] } | undefined;
  const flush = () => {
    if (paragraph.length > 0) blocks.push(<p key={blocks.length}>{inline(paragraph.join("\n"))}</p>);
    paragraph = [];
    if (list) {
      const items = list.items.map((item, i) => <li key={i}>{inline(item)}</li>);
      blocks.push(list.ordered ? <ol key={blocks.length}>{items}</ol> : <ul key={blocks.length}>{items}</ul>);
    }
    list = undefined;
  };
  for (const line of text.split("\n")) {
    const bullet = BULLET.exec(line);
    const number = bullet ? null : NUMBER.exec(line);
    const item = bullet ?? number;
    if (item) {
      const ordered = number !== null;
      if (paragraph.length > 0 || (list && list.ordered !== ordered)) flush();
      list ??= { ordered, items: [] };
      list.items.push(item[1]);
    } else if (line.trim() === "") {
      flush();
    } else if (list && /^\s{2,}\S/.test(line)) {
      // An indented line continues the list's last item.
      list.items[list.items.length - 1] += `\n${line.trim()}`;
    } else {
      if (list) flush();
      paragraph.push(line);
    }
  }
  flush();
  return <>{blocks}</>;
}

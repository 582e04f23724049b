//! `GET /`: the first page a newcomer opens, from the address the startup banner prints.
//!
//! With the demo on, it is a sample customer site with the widget embedded for the demo
//! project, so the newcomer can chat at once, beside a link to the inbox and the three steps
//! towards a real installation. With the demo off, it is a short page naming the inbox and the
//! API reference. Neither ever shows an admin key: the page is public to anyone who can reach
//! the server, and the key is printed in the server's own output instead.
//!
//! The pages have no script of their own (the strict Content-Security-Policy forbids inline
//! scripts); the demo page loads the widget through the embed snippet, from this server.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use warp::reply::Response;

use super::Ctx;

/// GET /
pub fn page(ctx: Arc<Ctx>, host: Option<String>) -> Response {
    let base = base_url(&ctx, host.as_deref());
    let body = match ctx.settings.demo.enabled {
        true => demo_page(&base, ctx.settings.demo.project_id.as_str()),
        false => plain_page(&base),
    };
    let mut resp = Response::new(Bytes::from(body).into());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    super::assets::page_headers(h);
    resp
}

/// The server's address as the browser reached it, for the snippets the page shows: the
/// `Host` header when it is a plain host (and port), else the listening address. Only the
/// requester sees it, and it is escaped anyway.
fn base_url(ctx: &Ctx, host: Option<&str>) -> String {
    let plain = |h: &&str| {
        !h.is_empty()
            && h.len() <= 255
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
    };
    match host.filter(plain) {
        Some(h) => format!("http://{h}"),
        None => format!("http://{}", ctx.settings.server.listen),
    }
}

/// Escapes text for HTML element content and double-quoted attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
  :root { color-scheme: light; --ink: #1f2933; --muted: #52606d; --accent: #0b7285; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 16px/1.5 system-ui, -apple-system, 'Segoe UI', sans-serif; color: var(--ink); background: #f8fafc; }
  header.shop { background: #102a43; color: #fff; padding: 14px 24px; display: flex; gap: 24px; align-items: baseline; flex-wrap: wrap; }
  header.shop strong { font-size: 20px; }
  header.shop nav a { color: #d9e2ec; margin-right: 16px; text-decoration: none; }
  .demo-note { background: #fff3bf; color: #5c3c00; padding: 10px 24px; font-size: 15px; }
  main { max-width: 960px; margin: 0 auto; padding: 24px; }
  .products { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 16px; margin: 16px 0 32px; }
  .product { background: #fff; border: 1px solid #d9e2ec; border-radius: 8px; padding: 16px; }
  .product .price { color: var(--muted); }
  section.next { background: #fff; border: 1px solid #d9e2ec; border-radius: 8px; padding: 8px 24px 16px; }
  ol li { margin: 12px 0; }
  code, pre { font: 14px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; background: #f0f4f8; border-radius: 4px; }
  code { padding: 1px 4px; }
  pre { padding: 10px 12px; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
  a { color: var(--accent); }
  .button { display: inline-block; background: var(--accent); color: #fff; padding: 8px 16px; border-radius: 6px; text-decoration: none; }
  .button:focus-visible, a:focus-visible { outline: 3px solid #f59f00; outline-offset: 2px; }
  p.muted { color: var(--muted); }
";

fn demo_page(base: &str, project: &str) -> String {
    let (base, project) = (esc(base), esc(project));
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Northwind Outfitters (Fleety demo)</title>
<link rel="icon" href="data:,">
<style>{STYLE}</style>
</head>
<body>
<header class="shop"><strong>Northwind Outfitters</strong>
<nav aria-label="Shop"><a href="/">Shop</a><a href="/">Orders</a><a href="/">Help</a></nav></header>
<p class="demo-note" role="note">This is Fleety's demo: a sample customer site with the support widget embedded. Open the chat at the bottom right and ask, say, “How do I reset my password?” or ask for a person; the conversation shows up in the <a href="/inbox">inbox</a>.</p>
<main>
<h1>Gear for every trail</h1>
<div class="products">
<div class="product"><h2>Ridge daypack</h2><p class="price">€89</p><p>22 litres, a rain cover in the lid.</p></div>
<div class="product"><h2>Summit shell jacket</h2><p class="price">€179</p><p>Waterproof and light enough to forget.</p></div>
<div class="product"><h2>Trail runners</h2><p class="price">€129</p><p>Grip on wet rock, free returns for 30 days.</p></div>
</div>
<p><a class="button" href="/inbox">Open the inbox</a></p>
<p class="muted">Sign in to the inbox with project <code>{project}</code> and the demo admin key the server printed when it started (it is also kept in the data directory, in <code>demo-admin-key</code>). It is never shown on this page.</p>
<section class="next" aria-labelledby="next-steps">
<h2 id="next-steps">Next steps</h2>
<ol>
<li><strong>Embed the snippet</strong> on your own site, one line before <code>&lt;/body&gt;</code>:
<pre>&lt;script src="{base}/widget.js" data-project="{project}" async&gt;&lt;/script&gt;</pre>
and allow your site's origin in the project's settings (the inbox's Settings page, or <code>PATCH /v1/projects/{project}</code> with <code>allowed_origins</code>).</li>
<li><strong>Create a project</strong> of your own: <code>fleety project create --name Acme --origin https://acme.example</code>, or, with <code>FLEETY_OPERATOR_TOKEN</code> set,
<pre>curl -X POST {base}/v1/admin/projects -H "Authorization: Bearer $FLEETY_OPERATOR_TOKEN" -H 'Content-Type: application/json' -d '{{"name":"Acme","allowed_origins":["https://acme.example"]}}'</pre>
Both print the project's id and admin key once.</li>
<li><strong>Point the assistant at a model</strong>: it answers from the help center offline until you do. Any OpenAI-compatible server works:
<pre>FLEETY_LLM_BASE_URL=https://api.openai.com/v1 FLEETY_LLM_API_KEY=sk-... FLEETY_LLM_MODEL=gpt-4o-mini fleety</pre></li>
</ol>
<p class="muted">The API reference: <a href="/v1/openapi.json">/v1/openapi.json</a>. Turn this demo off with <code>FLEETY_DEMO=false</code>.</p>
</section>
</main>
<script src="/widget.js" data-project="{project}" async></script>
</body>
</html>
"#
    )
}

fn plain_page(base: &str) -> String {
    let base = esc(base);
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Fleety</title>
<link rel="icon" href="data:,">
<style>{STYLE}</style>
</head>
<body>
<main>
<h1>Fleety is running</h1>
<ul>
<li>Agents: the <a href="/inbox">inbox</a>, at <code>{base}/inbox</code>, signed in with a project's id and admin key.</li>
<li>Developers: the API reference, at <a href="/v1/openapi.json"><code>{base}/v1/openapi.json</code></a>.</li>
</ul>
</main>
</body>
</html>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_request_is_escaped() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let page = demo_page("http://h<i>", "demo");
        assert!(page.contains("http://h&lt;i&gt;/widget.js"));
        assert!(!page.contains("h<i>"));
    }
}

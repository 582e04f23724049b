//! The web front ends, built by `web/build.mjs` into `web/dist/` and embedded in the binary, so
//! the server needs no Node at run time: the widget's loader (`/widget.js`, the script of the
//! embed snippet), its panel (`/widget/ui.js`, loaded by the loader), and the agents' inbox
//! (`/inbox`).
//!
//! Each is kept gzipped too and sent so to clients that accept it. The loader is cached
//! briefly, since sites embed its one URL; the panel is cached for a year when asked for by the
//! version the loader names (`?v=`), which changes with its content.

use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::StatusCode;
use sha2::{Digest, Sha256};
use warp::reply::Response;

pub struct Asset {
    body: &'static [u8],
    gzip: &'static [u8],
    content_type: &'static str,
    /// `Cache-Control` when asked for without a matching version.
    cache: &'static str,
    /// Scripts a cross-origin page imports need CORS; the inbox page must not be framed.
    script: bool,
    etag: OnceLock<String>,
}

macro_rules! asset {
    ($file:literal, $type:literal, $cache:literal, $script:literal) => {
        Asset {
            body: include_bytes!(concat!("../../web/dist/", $file)),
            gzip: include_bytes!(concat!("../../web/dist/", $file, ".gz")),
            content_type: $type,
            cache: $cache,
            script: $script,
            etag: OnceLock::new(),
        }
    };
}

pub static LOADER: Asset = asset!("widget.js", "text/javascript", "public, max-age=300", true);
pub static WIDGET_UI: Asset = asset!(
    "widget-ui.js",
    "text/javascript",
    "public, max-age=300",
    true
);
pub static INBOX_JS: Asset = asset!("inbox.js", "text/javascript", "no-cache", false);
pub static INBOX_PAGE: Asset = asset!("inbox.html", "text/html; charset=utf-8", "no-cache", false);

/// What an asset's answer depends on besides its version: the accepted encodings and the
/// client's cached `ETag`.
pub struct AssetRequest {
    encoding: Option<String>,
    etag: Option<String>,
}

/// `?v=`: the version of an asset a page asks for (the widget's loader names the interface's).
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// The version wanted; any other gets a short cache lifetime.
    pub v: Option<String>,
}

/// Reads an [`AssetRequest`] from the headers.
pub fn request(
) -> impl warp::Filter<Extract = (AssetRequest,), Error = std::convert::Infallible> + Clone {
    use warp::Filter;
    warp::header::optional::<String>("accept-encoding")
        .and(warp::header::optional::<String>("if-none-match"))
        .map(|encoding, etag| AssetRequest { encoding, etag })
        .or(warp::any().map(|| AssetRequest {
            encoding: None,
            etag: None,
        }))
        .unify()
}

impl Asset {
    pub fn answer_to(&self, r: &AssetRequest) -> Response {
        self.answer(r.encoding.as_deref(), r.etag.as_deref(), None)
    }

    pub fn answer_versioned(&self, r: &AssetRequest, version: Option<&str>) -> Response {
        self.answer(r.encoding.as_deref(), r.etag.as_deref(), version)
    }

    /// A short hash of the content: the `ETag`, and the version the loader asks for.
    pub fn version(&self) -> &str {
        self.etag.get_or_init(|| {
            let digest = Sha256::digest(self.body);
            digest[..6].iter().map(|b| format!("{b:02x}")).collect()
        })
    }

    /// The asset's answer: gzipped when the client accepts it, 304 when the client has it.
    pub fn answer(
        &self,
        accept_encoding: Option<&str>,
        if_none_match: Option<&str>,
        version: Option<&str>,
    ) -> Response {
        let etag = format!("\"{}\"", self.version());
        let mut resp = if if_none_match == Some(etag.as_str()) {
            let mut resp = Response::new(Bytes::new().into());
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
            resp
        } else if accept_encoding.is_some_and(accepts_gzip) {
            let mut resp = Response::new(Bytes::from_static(self.gzip).into());
            let h = resp.headers_mut();
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            resp
        } else {
            Response::new(Bytes::from_static(self.body).into())
        };
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        if let Ok(v) = HeaderValue::from_str(&etag) {
            h.insert(header::ETAG, v);
        }
        let cache = if version == Some(self.version()) {
            "public, max-age=31536000, immutable"
        } else {
            self.cache
        };
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if self.script {
            // Public code, imported by any site that embeds the widget.
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        } else {
            page_headers(h);
        }
        resp
    }
}

/// The security headers of the server's own pages (the inbox, `/`): never framed, no referrer,
/// and scripts from this server only.
pub fn page_headers(h: &mut http::HeaderMap) {
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
}

/// The pages' Content-Security-Policy.
pub const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'";

fn accepts_gzip(header: &str) -> bool {
    header.split(',').any(|part| {
        let mut it = part.split(';');
        let coding = it.next().unwrap_or("").trim();
        let refused = it.any(|p| {
            let p = p.trim().replace(' ', "");
            p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_sent_only_to_clients_that_take_it() {
        assert!(accepts_gzip("gzip, deflate, br"));
        assert!(accepts_gzip("br;q=1.0, gzip;q=0.8"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("br"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("identity"));
    }

    #[test]
    fn the_loader_fits_its_budget_and_names_the_panel_it_loads() {
        assert!(
            LOADER.gzip.len() <= 10 * 1024,
            "{} bytes",
            LOADER.gzip.len()
        );
        assert!(
            WIDGET_UI.gzip.len() <= 80 * 1024,
            "{} bytes",
            WIDGET_UI.gzip.len()
        );
        let loader = std::str::from_utf8(LOADER.body).unwrap();
        assert!(
            loader.contains(WIDGET_UI.version()),
            "the loader asks for another panel"
        );
    }
}

//! The router: finds the route of a request in the table (`routes.rs`) by its path and method,
//! and hands the request to that route's handler. What the table decides, it decides for every
//! route alike:
//!
//! - a path no route has is a 404; a path whose routes take other methods is a 405 with
//!   `Allow` naming them;
//! - `OPTIONS` answers with the path's own methods (the CORS preflight, see [`preflight`]);
//! - `HEAD` is answered as `GET` without the body (hyper leaves the body out);
//! - the metrics label of a request is its route's path, or `other`.
//!
//! Nothing of a route runs before its path and method matched, so no guard counts a request
//! that is not its route's.

use std::convert::Infallible;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use futures_util::future::{self, Either};
use http::header::HeaderValue;
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use tower_service::Service;
use warp::reply::Response;
use warp::Filter;

use super::route::PathParams;
use super::routes::table;
use super::{ApiError, Ctx};
use crate::server::RequestMeta;

/// One path of the table: its segments, and its routes.
struct PathEntry {
    template: &'static str,
    segments: Vec<Segment>,
    /// Indexes into the table, one per method.
    routes: Vec<usize>,
    /// `Allow`: the methods of this path, with `HEAD` beside `GET`, and `OPTIONS`.
    allow: HeaderValue,
}

enum Segment {
    Literal(&'static str),
    Param,
}

/// The paths of the table, grouped, built once.
fn paths() -> &'static [PathEntry] {
    static PATHS: LazyLock<Vec<PathEntry>> = LazyLock::new(|| {
        let mut paths: Vec<PathEntry> = Vec::new();
        for (i, route) in table().iter().enumerate() {
            match paths.iter_mut().find(|p| p.template == route.path) {
                Some(entry) => entry.routes.push(i),
                None => paths.push(PathEntry {
                    template: route.path,
                    segments: route
                        .path
                        .trim_start_matches('/')
                        .split('/')
                        .map(|s| match s.starts_with('{') {
                            true => Segment::Param,
                            false => Segment::Literal(s),
                        })
                        .collect(),
                    routes: vec![i],
                    allow: HeaderValue::from_static(""),
                }),
            }
        }
        for entry in &mut paths {
            let mut methods: Vec<&str> = Vec::new();
            for &i in &entry.routes {
                let method = table()[i].method.as_str();
                methods.push(method);
                if method == "GET" {
                    methods.push("HEAD");
                }
            }
            methods.push("OPTIONS");
            entry.allow = HeaderValue::from_str(&methods.join(", "))
                .unwrap_or(HeaderValue::from_static("OPTIONS"));
        }
        paths
    });
    &PATHS
}

/// The path entry a request's path belongs to, and its parameters, percent-decoded. An empty
/// segment never matches a parameter.
fn find(path: &str) -> Option<(&'static PathEntry, Vec<String>)> {
    let rest = path.strip_prefix('/')?;
    'entries: for entry in paths() {
        let mut params = Vec::new();
        let mut segments = rest.split('/');
        for expected in &entry.segments {
            let Some(segment) = segments.next() else {
                continue 'entries;
            };
            match expected {
                Segment::Literal(literal) if *literal == segment => {}
                Segment::Param if !segment.is_empty() => {
                    match percent_encoding::percent_decode_str(segment).decode_utf8() {
                        Ok(decoded) => params.push(decoded.into_owned()),
                        Err(_) => continue 'entries,
                    }
                }
                _ => continue 'entries,
            }
        }
        if segments.next().is_none() {
            return Some((entry, params));
        }
    }
    None
}

/// The metrics label of a path: its route's path, with the parameters' names, or `other`.
pub fn route_label(path: &str) -> &'static str {
    find(path).map_or("other", |(entry, _)| entry.template)
}

/// The methods a path's routes take, as `Allow` says them; `None` for a path no route has.
pub fn allowed(path: &str) -> Option<&'static str> {
    find(path).and_then(|(entry, _)| entry.allow.to_str().ok())
}

/// Dispatches requests to the routes' handlers.
pub struct Router<S> {
    /// One per route of the table, in its order.
    handlers: Vec<S>,
    preflight: S,
}

/// The answer to a request: at once, or from a handler.
pub type Answer<F> = Either<future::Ready<Result<Response, Infallible>>, F>;

/// Builds the router of a server.
pub fn router(
    ctx: &Arc<Ctx>,
) -> Router<
    impl Service<Request<Incoming>, Response = Response, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static,
> {
    let handlers = super::routes::handlers(ctx)
        .into_iter()
        .map(|handler| warp::service(finish(handler)))
        .collect();
    let preflight = warp::service(finish(
        super::access::with_ctx(ctx)
            .and(warp::path::full())
            .and(super::access::meta())
            .and(warp::ext::get::<Allow>())
            .then(preflight)
            .boxed(),
    ));
    Router {
        handlers,
        preflight,
    }
}

/// What every route's answer goes through: refusals become `{"error"}` answers. (The server
/// puts the headers the guard decided on every answer, see `RequestMeta::seal`.)
fn finish(handler: super::route::Handler) -> super::route::Handler {
    handler
        .recover(super::error::recover)
        .unify()
        .with(warp::trace(
            |info| tracing::info_span!("request", method = %info.method(), path = %info.path()),
        ))
        .map(warp::Reply::into_response)
        .boxed()
}

/// The methods of the requested path, for the preflight.
#[derive(Clone)]
struct Allow(HeaderValue);

impl<S> Router<S>
where
    S: Service<Request<Incoming>, Response = Response, Error = Infallible> + Clone,
{
    /// Routes `req`: returns its metrics label and the answer to come.
    pub fn call(&self, mut req: Request<Incoming>) -> (&'static str, Answer<S::Future>) {
        let Some((entry, params)) = find(req.uri().path()) else {
            let answer = ApiError::not_found("no such endpoint").into_response();
            return ("other", Either::Left(future::ok(answer)));
        };
        let method = req.method().clone();
        if method == Method::OPTIONS {
            req.extensions_mut().insert(Allow(entry.allow.clone()));
            return (
                entry.template,
                Either::Right(self.preflight.clone().call(req)),
            );
        }
        let wanted = if method == Method::HEAD {
            Method::GET
        } else {
            method
        };
        let Some(&i) = entry.routes.iter().find(|&&i| table()[i].method == wanted) else {
            let mut answer = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint",
            )
            .into_response();
            answer
                .headers_mut()
                .insert(http::header::ALLOW, entry.allow.clone());
            return (entry.template, Either::Left(future::ok(answer)));
        };
        if !params.is_empty() {
            req.extensions_mut().insert(PathParams(params.into()));
        }
        (
            entry.template,
            Either::Right(self.handlers[i].clone().call(req)),
        )
    }
}

/// OPTIONS: the CORS preflight, with the path's own methods. The project comes from the path
/// where there is one; for endpoints whose project is in the body or token, any project's
/// allowed origin passes here and the real request is checked against its own project.
async fn preflight(
    ctx: Arc<Ctx>,
    path: warp::path::FullPath,
    meta: Arc<RequestMeta>,
    allow: Allow,
) -> Response {
    let Some(origin) = meta.origin.clone() else {
        let mut resp = Response::new(Bytes::new().into());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        resp.headers_mut().insert(http::header::ALLOW, allow.0);
        return resp;
    };
    let segments: Vec<&str> = path.as_str().trim_matches('/').split('/').collect();
    let mut named = None;
    let allowed = match segments.as_slice() {
        ["v1", "tickets" | "projects" | "kb", project, ..] => {
            named = Some(*project);
            match super::access::parse_project_id(project) {
                Ok(id) => {
                    matches!(ctx.projects.get(&id).await, Ok(Some(p)) if crate::projects::allows(&p, &origin))
                }
                Err(_) => false,
            }
        }
        _ => ctx.projects.any_allows(&origin),
    };
    if !allowed {
        super::access::warn_refused_origin(named.unwrap_or("(any)"), &origin);
        let mut refused = ApiError::forbidden("origin not allowed").into_response();
        refused
            .headers_mut()
            .insert(http::header::VARY, HeaderValue::from_static("Origin"));
        return refused;
    }
    let mut resp = Response::new(Bytes::new().into());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&origin) {
        h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.insert(http::header::VARY, HeaderValue::from_static("Origin"));
    h.insert(http::header::ALLOW, allow.0.clone());
    h.insert(http::header::ACCESS_CONTROL_ALLOW_METHODS, allow.0);
    h.insert(
        http::header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type, Authorization, Idempotency-Key, X-Ticket-Key"),
    );
    h.insert(
        http::header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_of_the_table_is_found_with_its_parameters() {
        for route in table() {
            let concrete: Vec<String> = route
                .path
                .split('/')
                .map(|s| match s.starts_with('{') {
                    true => format!("x-{}", s.len()),
                    false => s.to_owned(),
                })
                .collect();
            let (entry, params) = find(&concrete.join("/")).expect(route.path);
            assert_eq!(entry.template, route.path);
            assert_eq!(params.len(), route.path_params().count(), "{}", route.path);
        }
    }

    #[test]
    fn no_path_belongs_to_two_templates() {
        // A parameter matches any segment, so two templates of one length may overlap only if
        // they agree on every literal segment; none do.
        let all = paths();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                let overlap = a.segments.len() == b.segments.len()
                    && a.segments.iter().zip(&b.segments).all(|pair| match pair {
                        (Segment::Literal(x), Segment::Literal(y)) => x == y,
                        _ => true,
                    });
                assert!(!overlap, "{} and {}", a.template, b.template);
            }
        }
    }

    #[test]
    fn labels_never_carry_ids_and_unknown_paths_are_other() {
        assert_eq!(
            route_label("/v1/tickets/acme/swift-bear-053"),
            "/v1/tickets/{projectId}/{slug}"
        );
        assert_eq!(
            route_label("/v1/tickets/acme/swift-bear-053/messages/read"),
            "/v1/tickets/{projectId}/{slug}/messages/read"
        );
        assert_eq!(
            route_label("/v1/projects/acme/kb/articles/3f0e8b1c"),
            "/v1/projects/{projectId}/kb/articles/{articleId}"
        );
        assert_eq!(route_label("/v1/chat/tools"), "/v1/chat/tools");
        assert_eq!(route_label("/wp-admin/x/y"), "other");
        assert_eq!(route_label("/inbox/app.js"), "/inbox/app.js");
        assert_eq!(route_label("/v1/tickets/a/b/c/d/e/f"), "other");
        assert_eq!(route_label("/v1/tickets//x"), "other");
        assert_eq!(route_label(""), "other");
    }

    #[test]
    fn allow_names_each_paths_own_methods() {
        assert_eq!(allowed("/healthz"), Some("GET, HEAD, OPTIONS"));
        assert_eq!(
            allowed("/v1/tickets/demo/swift-bear-053"),
            Some("GET, HEAD, PATCH, OPTIONS")
        );
        assert_eq!(
            allowed("/v1/projects/demo/kb/articles/x"),
            Some("GET, HEAD, PATCH, DELETE, OPTIONS")
        );
        assert_eq!(allowed("/v1/chat"), Some("POST, OPTIONS"));
        assert_eq!(allowed("/nowhere"), None);
    }
}

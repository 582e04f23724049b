//! What a route is: its method and path, who may call it, what it reads and answers, and how
//! its handler is built. `routes.rs` holds the one table of them; the router, the metrics
//! labels and the OpenAPI document all read that table.
//!
//! A route's handler is a warp filter built by a function of a [`Build`], which offers the
//! pieces a handler reads (the path's parameters, the guard, the query, the JSON body). Each
//! piece checks, when the server starts, that the route's description says it reads it, so a
//! handler cannot read a query or a body its description does not name.

use std::any::TypeId;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt;
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::{Ref, RefOr, Schema};
use utoipa::{IntoParams, ToSchema};
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Buf, Filter, Rejection};

use super::access::{self, Refused, Session, Visitor};
use super::upgrade::WsRequest;
use super::{ApiError, Ctx};
use crate::server::RequestMeta;
use fleety_actors::domain::Project;

/// A handler, ready to serve the requests the router gives it.
pub type Handler = BoxedFilter<(Response,)>;

/// The schemas a document collects, by name.
pub type Schemas = Vec<(String, RefOr<Schema>)>;
/// Registers a type's schema (and those it refers to) and returns a reference to it.
pub type SchemaFn = fn(&mut Schemas) -> RefOr<Schema>;

/// The schema of `T`, registered under its name.
pub fn schema<T: ToSchema>(out: &mut Schemas) -> RefOr<Schema> {
    out.push((T::name().into_owned(), T::schema()));
    T::schemas(out);
    Ref::from_schema_name(T::name()).into()
}

/// Any JSON object (the OpenAPI document itself).
pub fn object(_: &mut Schemas) -> RefOr<Schema> {
    use utoipa::openapi::schema::AdditionalProperties;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        .into()
}

/// A UUID, as a path parameter.
pub fn uuid(_: &mut Schemas) -> RefOr<Schema> {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .into()
}

/// Who may call a route: the guard its handler runs (see `access.rs`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    /// Anyone, unchecked: the server's own pages, its health and its description.
    Anyone,
    /// A widget's endpoints: anyone, counted per client IP unless they hold the project's
    /// admin key, and from a browser only on the project's origins.
    Public,
    /// Anyone, counted per client IP by the session limiter (`POST /v1/init-session`).
    SessionLimit,
    /// A visitor's session token.
    Session,
    /// A visitor's session token, counted per client IP by the session limiter.
    CountedSession,
    /// The project's admin key, or any signed-in member of the project.
    Agent,
    /// The project's admin key, or a signed-in owner or admin.
    Admin,
    /// The project's admin key, or a signed-in owner.
    Owner,
    /// Anyone, on an allowed origin: a member signing in (with its own brake on guessing).
    SignIn,
    /// A short-lived feed token in the query.
    Feed,
    /// The operator token.
    Operator,
    /// The mail server, with the inbound email secret (`FLEETY_INBOUND_EMAIL_SECRET`).
    MailServer,
}

/// How large a route's body may be.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Limit {
    /// `FLEETY_MAX_BODY_BYTES`.
    Standard,
    /// Conversations and articles: `FLEETY_MAX_BODY_BYTES`, or 256 KiB if that is larger.
    Large,
}

/// Bodies of the chat and knowledge-base endpoints may be this large (or the standard limit,
/// if larger).
pub const LARGE_BODY_BYTES: u64 = 256 * 1024;

/// A route's request body: JSON, or a raw email message.
pub struct Body {
    pub schema: SchemaFn,
    pub limit: Limit,
    /// An empty body stands for the type's default.
    pub optional: bool,
    pub media: Media,
    ty: TypeId,
}

/// What a body is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Media {
    /// A JSON object (`application/json`).
    Json,
    /// A raw RFC 5322 message, as a mail server pipes it ([`MAIL_MEDIA`]), up to
    /// [`crate::inbound_mail::MAX_MESSAGE_BYTES`].
    Mail,
}

/// The content types a raw email message may come as.
pub const MAIL_MEDIA: &[&str] = &["message/rfc822", "application/octet-stream"];

/// A raw message, as a string of bytes.
pub fn binary(_: &mut Schemas) -> RefOr<Schema> {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
        .into()
}

/// What an answer carries.
pub enum Content {
    Json(SchemaFn),
    /// `text/event-stream`: the chat's streamed answer, each event of this schema.
    EventStream(SchemaFn),
    /// The chat with tools: a stream of events of the first schema, or one JSON answer of the
    /// second when the assistant opened a ticket.
    EventStreamOrJson(SchemaFn, SchemaFn),
    /// A fixed content type, described in words (pages, scripts, metrics).
    Other(&'static str),
    /// No body (a 304, a 101).
    Nothing,
}

/// One answer a route gives when it does what was asked.
pub struct Answer {
    pub status: u16,
    pub description: &'static str,
    pub content: Content,
}

/// A follow-up request the answer makes possible (an OpenAPI link).
pub struct LinkTo {
    pub name: &'static str,
    pub operation: &'static str,
    /// (parameter, runtime expression)
    pub parameters: &'static [(&'static str, &'static str)],
}

/// A route's query parameters: the type its handler reads them into.
pub struct Query {
    pub params: fn() -> Vec<Parameter>,
    ty: TypeId,
}

/// A request header a route reads.
pub struct HeaderParam {
    pub name: &'static str,
    pub description: &'static str,
    pub schema: SchemaFn,
}

/// The realtime frames a WebSocket route sends, named for its description.
pub struct Frames {
    /// The schema of every frame (a `oneOf` over the event types).
    pub schema: SchemaFn,
}

/// One route of the table.
pub struct Route {
    pub method: Method,
    /// The path, with `{name}` for each parameter.
    pub path: &'static str,
    /// The OpenAPI `operationId`.
    pub id: &'static str,
    pub summary: &'static str,
    pub description: Option<&'static str>,
    pub tag: &'static str,
    pub access: Access,
    /// Path parameters: their schema, by name (each `{name}` of the path has one).
    pub params: Vec<(&'static str, &'static str, SchemaFn)>,
    pub query: Option<Query>,
    pub headers: Vec<HeaderParam>,
    pub body: Option<Body>,
    pub answers: Vec<Answer>,
    /// Statuses of this route's own refusals; the guard's, the body's and the query's come
    /// from `access`, `body` and `query`.
    pub refusals: Vec<(u16, &'static str)>,
    pub links: Vec<LinkTo>,
    pub frames: Option<Frames>,
    /// A public route that also reads a visitor's session token when one is sent.
    pub reads_session: bool,
    /// A public route of one ticket: with a valid session token for the project, it is counted
    /// per session by the visitor limiter instead of per client IP.
    pub per_session: bool,
    pub handler: fn(&Build) -> Handler,
}

impl Route {
    pub fn new(
        method: Method,
        path: &'static str,
        id: &'static str,
        summary: &'static str,
        access: Access,
        handler: fn(&Build) -> Handler,
    ) -> Route {
        Route {
            method,
            path,
            id,
            summary,
            description: None,
            tag: "",
            access,
            params: Vec::new(),
            query: None,
            headers: Vec::new(),
            body: None,
            answers: Vec::new(),
            refusals: Vec::new(),
            links: Vec::new(),
            frames: None,
            reads_session: false,
            per_session: false,
            handler,
        }
    }

    pub fn tag(mut self, tag: &'static str) -> Self {
        self.tag = tag;
        self
    }

    pub fn describe(mut self, description: &'static str) -> Self {
        self.description = Some(description);
        self
    }

    pub fn param(
        mut self,
        name: &'static str,
        description: &'static str,
        schema: SchemaFn,
    ) -> Self {
        self.params.push((name, description, schema));
        self
    }

    pub fn query<Q: IntoParams + 'static>(mut self) -> Self {
        self.query = Some(Query {
            params: || Q::into_params(|| Some(ParameterIn::Query)),
            ty: TypeId::of::<Q>(),
        });
        self
    }

    pub fn header<T: ToSchema>(mut self, name: &'static str, description: &'static str) -> Self {
        self.headers.push(HeaderParam {
            name,
            description,
            schema: schema::<T>,
        });
        self
    }

    pub fn body<T: ToSchema + 'static>(mut self, limit: Limit) -> Self {
        self.body = Some(Body {
            schema: schema::<T>,
            limit,
            optional: false,
            media: Media::Json,
            ty: TypeId::of::<T>(),
        });
        self
    }

    /// A raw email message as the body ([`Media::Mail`]).
    pub fn mail_body(mut self) -> Self {
        self.body = Some(Body {
            schema: binary,
            limit: Limit::Standard,
            optional: false,
            media: Media::Mail,
            ty: TypeId::of::<Bytes>(),
        });
        self
    }

    /// A body that may be left out: an empty one stands for `T::default()`.
    pub fn optional_body<T: ToSchema + 'static>(mut self) -> Self {
        self.body = Some(Body {
            schema: schema::<T>,
            limit: Limit::Standard,
            optional: true,
            media: Media::Json,
            ty: TypeId::of::<T>(),
        });
        self
    }

    pub fn answers(mut self, status: u16, description: &'static str, content: Content) -> Self {
        self.answers.push(Answer {
            status,
            description,
            content,
        });
        self
    }

    pub fn refuses(mut self, status: u16, description: &'static str) -> Self {
        self.refusals.push((status, description));
        self
    }

    pub fn link(
        mut self,
        name: &'static str,
        operation: &'static str,
        parameters: &'static [(&'static str, &'static str)],
    ) -> Self {
        self.links.push(LinkTo {
            name,
            operation,
            parameters,
        });
        self
    }

    /// The route also reads a visitor's session token, when one is sent.
    pub fn reads_session(mut self) -> Self {
        self.reads_session = true;
        self
    }

    /// The route is counted per visitor session when it comes with the project's session
    /// token (and per client IP without one).
    pub fn counted_per_session(mut self) -> Self {
        self.reads_session = true;
        self.per_session = true;
        self
    }

    pub fn frames(mut self, schema: SchemaFn) -> Self {
        self.frames = Some(Frames { schema });
        self
    }

    /// The names of the path's parameters, in order.
    pub fn path_params(&self) -> impl Iterator<Item = &'static str> {
        self.path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
    }

    /// Whether the route reads a JSON body.
    pub fn has_body(&self) -> bool {
        self.body.as_ref().is_some_and(|b| b.media == Media::Json)
    }

    /// Whether the route reads a raw email message.
    pub fn has_mail_body(&self) -> bool {
        self.body.as_ref().is_some_and(|b| b.media == Media::Mail)
    }
}

/// The path parameters of a matched request, in the order of the route's path.
#[derive(Clone, Debug, Default)]
pub struct PathParams(pub Arc<[String]>);

/// What a handler is built from: the server's shared state and the route it serves.
pub struct Build<'a> {
    pub ctx: &'a Arc<Ctx>,
    pub route: &'a Route,
}

impl Build<'_> {
    /// The server's shared state.
    pub fn ctx(&self) -> impl Filter<Extract = (Arc<Ctx>,), Error = Infallible> + Clone {
        access::with_ctx(self.ctx)
    }

    /// What the server read from the request's connection and headers.
    pub fn meta(&self) -> impl Filter<Extract = (Arc<RequestMeta>,), Error = Rejection> + Clone {
        access::meta()
    }

    /// The path parameter `name`, percent-decoded.
    pub fn param(
        &self,
        name: &'static str,
    ) -> impl Filter<Extract = (String,), Error = Rejection> + Clone {
        let at = self.route.path_params().position(|p| p == name);
        assert!(at.is_some(), "{} has no parameter {name}", self.route.path);
        let at = at.unwrap_or_default();
        warp::ext::get::<PathParams>()
            .map(move |p: PathParams| p.0.get(at).cloned().unwrap_or_default())
    }

    /// The query string, as `Q`; a query that does not parse is refused with 400.
    pub fn query<Q>(&self) -> impl Filter<Extract = (Q,), Error = Rejection> + Clone
    where
        Q: DeserializeOwned + Send + 'static,
    {
        assert!(
            self.route.query.as_ref().map(|q| q.ty) == Some(TypeId::of::<Q>()),
            "{} {} reads a query its description does not name",
            self.route.method,
            self.route.path
        );
        warp::query::<Q>()
    }

    /// The JSON body, as `T`: refused with 413 past the route's size limit, 415 without a JSON
    /// content type, 400 when it is empty or does not parse.
    pub fn json<T>(&self) -> impl Filter<Extract = (T,), Error = Rejection> + Clone
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.body_of::<T>(false)
            .and_then(|parsed: Option<T>| async move {
                parsed.ok_or_else(|| {
                    warp::reject::custom(Refused(ApiError::bad_request(
                        "request body is empty; a JSON object is expected",
                    )))
                })
            })
    }

    /// The raw email message: refused with 413 past
    /// [`MAX_MESSAGE_BYTES`](crate::inbound_mail::MAX_MESSAGE_BYTES), 415 unless its content
    /// type is one of [`MAIL_MEDIA`].
    pub fn mail(&self) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
        assert!(
            self.route.has_mail_body(),
            "{} {} reads a message its description does not name",
            self.route.method,
            self.route.path
        );
        self.meta()
            .and_then(|meta: Arc<RequestMeta>| async move {
                let mime = meta.content_type.as_deref().unwrap_or("");
                let mime = mime.split(';').next().unwrap_or("").trim();
                if MAIL_MEDIA.iter().any(|m| mime.eq_ignore_ascii_case(m)) {
                    Ok(())
                } else {
                    Err(warp::reject::custom(Refused(ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "Content-Type must be message/rfc822 or application/octet-stream",
                    ))))
                }
            })
            .untuple_one()
            .and(read_body(crate::inbound_mail::MAX_MESSAGE_BYTES))
    }

    /// A JSON body that may be left out: an empty one stands for `T::default()`.
    pub fn optional_json<T>(&self) -> impl Filter<Extract = (T,), Error = Rejection> + Clone
    where
        T: DeserializeOwned + Default + Send + 'static,
    {
        self.body_of::<T>(true)
            .map(|parsed: Option<T>| parsed.unwrap_or_default())
    }

    /// The body as `T`, or `None` when it is empty and may be.
    fn body_of<T>(
        &self,
        optional: bool,
    ) -> impl Filter<Extract = (Option<T>,), Error = Rejection> + Clone
    where
        T: DeserializeOwned + Send + 'static,
    {
        let body = self.route.body.as_ref();
        assert!(
            body.map(|b| (b.ty, b.optional)) == Some((TypeId::of::<T>(), optional)),
            "{} {} reads a body its description does not name",
            self.route.method,
            self.route.path
        );
        let standard = self.ctx.settings.server.max_body_bytes;
        let limit = match body.map(|b| b.limit) {
            Some(Limit::Large) => standard.max(LARGE_BODY_BYTES),
            _ => standard,
        };
        self.meta().and(read_body(limit)).and_then(
            move |meta: Arc<RequestMeta>, bytes: Bytes| async move {
                if optional && bytes.is_empty() {
                    return Ok(None);
                }
                parse_body(&meta, &bytes)
                    .map(Some)
                    .map_err(|e| warp::reject::custom(Refused(e)))
            },
        )
    }

    fn expect(&self, access: Access) {
        assert!(
            self.route.access == access,
            "{} {} is described as {:?} but its handler checks {access:?}",
            self.route.method,
            self.route.path,
            self.route.access
        );
    }

    pub fn public(&self) -> impl Filter<Extract = (Visitor,), Error = Rejection> + Clone {
        self.expect(Access::Public);
        access::public(self.ctx, self.route.per_session)
    }

    /// The least role the route's [`Access`] names.
    fn least_role(&self) -> fleety_actors::member::Role {
        let role = access::least_role(self.route.access);
        assert!(
            role.is_some(),
            "{} {} is described as {:?} but its handler checks a member's role",
            self.route.method,
            self.route.path,
            self.route.access
        );
        role.unwrap_or(fleety_actors::member::Role::Owner)
    }

    /// The project's admin key or a member with the route's role.
    pub fn agent(&self) -> impl Filter<Extract = (Arc<Project>,), Error = Rejection> + Clone {
        access::agent(self.ctx, self.least_role())
    }

    /// [`member`](Self::member), with the caller as the audit records of its changes name
    /// them ([`super::audit::by`]).
    pub fn audited(
        &self,
    ) -> impl Filter<Extract = (Arc<Project>, fleety_actors::audit::AuditBy), Error = Rejection> + Clone
    {
        self.member()
            .and(self.meta())
            .map(|project, principal, meta: Arc<RequestMeta>| {
                (project, super::audit::by(&principal, &meta))
            })
            .untuple_one()
    }

    /// [`agent`](Self::agent), with the caller.
    pub fn member(
        &self,
    ) -> impl Filter<Extract = (Arc<Project>, access::Principal), Error = Rejection> + Clone {
        access::member(self.ctx, self.least_role())
    }

    pub fn sign_in(&self) -> impl Filter<Extract = (Arc<Project>,), Error = Rejection> + Clone {
        self.expect(Access::SignIn);
        access::sign_in(self.ctx)
    }

    pub fn session(&self) -> impl Filter<Extract = (Session,), Error = Rejection> + Clone {
        if self.route.access != Access::CountedSession {
            self.expect(Access::Session);
        }
        access::session(self.ctx)
    }

    /// Counts the request per client IP with the session limiter.
    pub fn session_limit(&self) -> impl Filter<Extract = (), Error = Rejection> + Clone {
        if self.route.access != Access::CountedSession {
            self.expect(Access::SessionLimit);
        }
        access::session_limit(self.ctx)
    }

    pub fn feed(
        &self,
    ) -> impl Filter<Extract = (Arc<Project>, access::FeedSession), Error = Rejection> + Clone {
        self.expect(Access::Feed);
        access::feed(self.ctx)
    }

    pub fn operator(&self) -> impl Filter<Extract = (), Error = Rejection> + Clone {
        self.expect(Access::Operator);
        access::operator(self.ctx)
    }

    pub fn mail_server(&self) -> impl Filter<Extract = (), Error = Rejection> + Clone {
        self.expect(Access::MailServer);
        access::mail_server(self.ctx)
    }

    /// A WebSocket handshake; anything else is refused with 400.
    pub fn websocket(&self) -> impl Filter<Extract = (WsRequest,), Error = Rejection> + Clone {
        assert!(
            self.route.frames.is_some(),
            "{} upgrades to a WebSocket but names no frames",
            self.route.path
        );
        super::upgrade::websocket()
    }
}

/// A body over the configured size.
#[derive(Debug)]
pub struct BodyTooLarge;
impl warp::reject::Reject for BodyTooLarge {}

/// The request body, refused with 413 once it passes `limit` bytes, whether or not the client
/// declared its length.
fn read_body(limit: u64) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and_then(move |declared: Option<u64>| async move {
            if declared.is_some_and(|n| n > limit) {
                Err(warp::reject::custom(BodyTooLarge))
            } else {
                Ok(())
            }
        })
        .untuple_one()
        .and(warp::body::stream())
        .and_then(move |stream| collect_body(stream, limit))
}

async fn collect_body<S, B>(stream: S, limit: u64) -> Result<Bytes, Rejection>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut out = BytesMut::new();
    let mut stream = std::pin::pin!(stream);
    while let Some(mut chunk) = stream
        .try_next()
        .await
        .map_err(|_| warp::reject::custom(BodyTooLarge))?
    {
        if out.len() as u64 + chunk.remaining() as u64 > limit {
            return Err(warp::reject::custom(BodyTooLarge));
        }
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            out.extend_from_slice(piece);
            let n = piece.len();
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}

/// Parses a JSON request body, insisting on a JSON content type.
pub fn parse_body<T: DeserializeOwned>(meta: &RequestMeta, body: &Bytes) -> Result<T, ApiError> {
    let is_json = meta.content_type.as_deref().is_some_and(|ct| {
        let mime = ct.split(';').next().unwrap_or("").trim();
        mime.eq_ignore_ascii_case("application/json")
    });
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ));
    }
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "request body is empty; a JSON object is expected",
        ));
    }
    // Every body of the API is an object; serde would also read a struct from an array.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

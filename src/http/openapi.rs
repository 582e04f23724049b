//! The OpenAPI 3.1 document of the HTTP API, served at `/v1/openapi.json`.
//!
//! It is built from the route table (`routes.rs`), the same table the router dispatches by:
//! each route's parameters, body and answers are the schemas of the types its handler reads
//! and writes. What every route of a kind shares is added here once: the refusals of its guard
//! (401, 403, 404, 429), of its body (400, 413, 415) and query (400), the `{"error"}` shape of
//! every refusal, the rate-limit headers, and the security scheme.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::Bytes;
use http::StatusCode;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, Required,
    ResponseBuilder,
};
use warp::reply::Response;

use super::route::{schema, Access, Content, Media, Route, Schemas, MAIL_MEDIA};
use super::routes::table;

/// The document, as served.
pub fn document() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(build()).unwrap_or_default();
        fix_names(&mut doc);
        doc
    })
}

pub fn document_response() -> Response {
    static JSON: OnceLock<Bytes> = OnceLock::new();
    let body = JSON
        .get_or_init(|| fleety_actors::events::encode(document()))
        .clone();
    super::error::json_bytes(StatusCode::OK, body)
}

/// Two names utoipa 5.5 cannot write: a link's `operationId` (it writes `operation_id`) and
/// a string's `contentSchema` (its extensions all start with `x-`). Renamed here, anywhere in
/// the document.
fn fix_names(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (from, to) in [("x-contentSchema", "contentSchema")] {
                if let Some(v) = map.remove(from) {
                    map.insert(to.into(), v);
                }
            }
            if let Some(links) = map.get_mut("links").and_then(|l| l.as_object_mut()) {
                for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
                    if let Some(id) = link.remove("operation_id") {
                        link.insert("operationId".into(), id);
                    }
                }
            }
            map.values_mut().for_each(fix_names);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(fix_names),
        _ => {}
    }
}

/// The `{"error": "..."}` body of every refusal.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // A schema only: `ApiError` writes this shape.
struct Error {
    /// What went wrong, for a person to read.
    error: String,
}

/// A refusal's answer.
fn refusal(description: &str, retry_after: bool, rate_limited: bool) -> utoipa::openapi::Response {
    let mut answer = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Error")))
            .build(),
    );
    if rate_limited {
        answer = rate_headers(answer);
    }
    if retry_after {
        answer = answer.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0)),
                )
                .description(Some("Seconds to wait before trying again"))
                .build(),
        );
    }
    answer.build()
}

/// The rate-limit headers a counted request's answer carries (when the limit is on).
fn rate_headers(answer: ResponseBuilder) -> ResponseBuilder {
    let count = |what: &str| {
        HeaderBuilder::new()
            .schema(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            )
            .description(Some(what))
            .build()
    };
    answer
        .header("X-RateLimit-Limit", count("Requests allowed per window"))
        .header(
            "X-RateLimit-Remaining",
            count("Requests left in this window"),
        )
        .header(
            "X-RateLimit-Reset",
            count("Seconds until the window resets"),
        )
}

/// The statuses every route of a kind may answer, besides its own.
fn shared_refusals(route: &Route) -> Vec<(u16, &'static str)> {
    let mut out = Vec::new();
    match route.access {
        Access::Anyone => {}
        Access::Public => {
            out.push((403, "The browser's origin is not one the project allows"));
            out.push((404, "No such project"));
            out.push((
                429,
                if route.per_session {
                    "Too many requests from this client, or from this visitor session when the \
                     request carries its session token (see Retry-After)"
                } else {
                    "Too many requests from this client (see Retry-After)"
                },
            ));
        }
        Access::SessionLimit => {
            out.push((403, "The browser's origin is not one the project allows"));
            out.push((429, "Too many requests from this client (see Retry-After)"));
        }
        Access::Session | Access::CountedSession => {
            out.push((
                401,
                "No session token, or one that is expired, forged or for another project",
            ));
            out.push((403, "The browser's origin is not one the project allows"));
            if route.access == Access::CountedSession {
                out.push((429, "Too many requests from this client (see Retry-After)"));
            }
        }
        Access::Agent | Access::Admin | Access::Owner => {
            out.push((
                401,
                "No credential, or a member's session that has ended: this needs the project's admin key or a member's session",
            ));
            out.push((
                403,
                match route.access {
                    Access::Agent => "Not the project's admin key, a cookie-signed request without its X-CSRF-Token, or an origin the project does not allow",
                    Access::Admin => "Not the project's admin key nor an owner or admin, a cookie-signed request without its X-CSRF-Token, or an origin the project does not allow",
                    _ => "Not the project's admin key nor an owner, a cookie-signed request without its X-CSRF-Token, or an origin the project does not allow",
                },
            ));
            out.push((404, "No such project"));
        }
        Access::SignIn => {
            out.push((403, "The browser's origin is not one the project allows"));
            out.push((404, "No such project"));
        }
        Access::Feed => {
            out.push((
                401,
                "No feed token, or one that is expired or for another project",
            ));
            out.push((403, "The browser's origin is not one the project allows"));
            out.push((404, "No such project"));
        }
        Access::Operator => {
            out.push((401, "No bearer token: this needs the operator token"));
            out.push((403, "Not the operator token, or the operator API is off"));
        }
        Access::MailServer => {
            out.push((401, "No inbound email secret, or a wrong one"));
            out.push((
                403,
                "Reply by email is off (no FLEETY_REPLY_DOMAIN or FLEETY_INBOUND_EMAIL_SECRET)",
            ));
        }
    }
    if route.has_mail_body() {
        out.push((400, "The body is not an email message"));
        out.push((413, "The message is larger than 10 MiB"));
        out.push((
            415,
            "The body is not message/rfc822 or application/octet-stream",
        ));
    }
    if route.query.is_some() {
        out.push((400, "A query parameter is malformed or out of range"));
    }
    if route.has_body() {
        out.push((400, "The body is not the JSON this operation takes"));
        out.push((413, "The body is too large"));
        out.push((415, "The body is not application/json"));
    }
    if route.frames.is_some() {
        out.push((400, "Not a WebSocket handshake"));
    }
    if route.access != Access::Anyone {
        out.push((
            500,
            "The server failed; nothing about it is told to the client",
        ));
        out.push((
            503,
            "A store or a ticket is briefly unavailable, or the server holds as many \
             connections as it may: retry after Retry-After",
        ));
    } else {
        out.push((
            503,
            "The server holds as many connections as it may: retry after Retry-After",
        ));
    }
    out
}

fn security(route: &Route) -> Vec<SecurityRequirement> {
    let scheme = |name: &str| SecurityRequirement::new::<_, _, &str>(name, []);
    match route.access {
        Access::Anyone | Access::SessionLimit => Vec::new(),
        // Anyone; an agent with the admin key is not counted and may speak as `admin`.
        Access::Public if route.reads_session => vec![
            SecurityRequirement::default(),
            scheme("adminKey"),
            scheme("sessionToken"),
        ],
        Access::Public => vec![
            SecurityRequirement::default(),
            scheme("adminKey"),
            scheme("memberSession"),
        ],
        Access::Session | Access::CountedSession => vec![scheme("sessionToken")],
        Access::Agent | Access::Admin | Access::Owner => vec![
            scheme("adminKey"),
            scheme("memberSession"),
            scheme("memberCookie"),
        ],
        Access::SignIn => Vec::new(),
        Access::Feed => vec![scheme("feedToken")],
        Access::Operator => vec![scheme("operatorToken")],
        Access::MailServer => vec![scheme("inboundSecret"), scheme("inboundBasic")],
    }
}

fn http_method(method: &http::Method) -> HttpMethod {
    match *method {
        http::Method::POST => HttpMethod::Post,
        http::Method::PATCH => HttpMethod::Patch,
        http::Method::DELETE => HttpMethod::Delete,
        http::Method::PUT => HttpMethod::Put,
        _ => HttpMethod::Get,
    }
}

fn operation(route: &Route, schemas: &mut Schemas) -> utoipa::openapi::path::Operation {
    let mut op = OperationBuilder::new()
        .operation_id(Some(route.id))
        .summary(Some(route.summary))
        .description(route.description)
        .tag(route.tag);
    for name in route.path_params() {
        let (_, description, schema_of) = route
            .params
            .iter()
            .find(|(n, _, _)| *n == name)
            .copied()
            .unwrap_or((name, "", schema::<String>));
        op = op.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some(description))
                .schema(Some(schema_of(schemas))),
        );
    }
    if let Some(query) = &route.query {
        for p in (query.params)() {
            op = op.parameter(p);
        }
    }
    for h in &route.headers {
        op = op.parameter(
            ParameterBuilder::new()
                .name(h.name)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(h.description))
                .schema(Some((h.schema)(schemas))),
        );
    }
    if let Some(body) = &route.body {
        let media: &[&str] = match body.media {
            Media::Json => &["application/json"],
            Media::Mail => MAIL_MEDIA,
        };
        let mut request = RequestBodyBuilder::new().required(Some(match body.optional {
            true => Required::False,
            false => Required::True,
        }));
        for mime in media {
            request = request.content(
                *mime,
                ContentBuilder::new()
                    .schema(Some((body.schema)(schemas)))
                    .build(),
            );
        }
        op = op.request_body(Some(request.build()));
    }
    let counted = matches!(
        route.access,
        Access::Public | Access::SessionLimit | Access::CountedSession
    );
    for answer in &route.answers {
        let mut response = ResponseBuilder::new().description(answer.description);
        response = match &answer.content {
            Content::Json(schema_of) => response.content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(schema_of(schemas)))
                    .build(),
            ),
            Content::EventStream(event) => response.content(
                "text/event-stream",
                ContentBuilder::new().schema(Some(event(schemas))).build(),
            ),
            Content::EventStreamOrJson(event, json) => response
                .content(
                    "text/event-stream",
                    ContentBuilder::new().schema(Some(event(schemas))).build(),
                )
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(json(schemas))).build(),
                ),
            Content::Other(media_type) => response.content(*media_type, text()),
            Content::Nothing => response,
        };
        if counted {
            response = rate_headers(response);
        }
        for link in &route.links {
            let mut builder = LinkBuilder::new().operation_id(link.operation);
            for (name, expression) in link.parameters {
                builder = builder.parameter(*name, *expression);
            }
            response = response.link(link.name, builder.build());
        }
        op = op.response(answer.status.to_string(), response.build());
    }
    // A route's own description of a status replaces the shared one; the shared ones of one
    // status (a bad query and a bad body) are joined.
    let mut refusals: BTreeMap<u16, String> = BTreeMap::new();
    for (status, description) in shared_refusals(route) {
        refusals
            .entry(status)
            .and_modify(|d| {
                d.push_str("; or: ");
                d.push_str(description);
            })
            .or_insert_with(|| description.to_owned());
    }
    for (status, description) in &route.refusals {
        refusals.insert(*status, (*description).to_owned());
    }
    for (status, description) in refusals {
        let retry_after = matches!(status, 429 | 503);
        op = op.response(
            status.to_string(),
            refusal(&description, retry_after, counted),
        );
    }
    for requirement in security(route) {
        op = op.security(requirement);
    }
    if let Some(frames) = &route.frames {
        let frame = (frames.schema)(schemas);
        let frame = serde_json::to_value(frame).unwrap_or_default();
        op = op.extensions(Some(
            ExtensionsBuilder::new()
                .add("x-websocket-frames", frame)
                .build(),
        ));
    }
    op.build()
}

fn text() -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

fn build() -> OpenApi {
    let mut schemas: Schemas = Vec::new();
    schema::<Error>(&mut schemas);
    let mut paths = Paths::new();
    let mut tags: Vec<&str> = Vec::new();
    for route in table() {
        let op = operation(route, &mut schemas);
        if !tags.contains(&route.tag) {
            tags.push(route.tag);
        }
        let item = PathItem::new(http_method(&route.method), op);
        match paths.paths.get_mut(route.path) {
            Some(existing) => existing.merge_operations(item),
            None => {
                paths.paths.insert(route.path.to_owned(), item);
            }
        }
    }
    let bearer = |description: &str| {
        let mut scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        scheme.description = Some(description.to_owned());
        SecurityScheme::Http(scheme)
    };
    let mut components = ComponentsBuilder::new()
        .security_scheme(
            "sessionToken",
            bearer("A visitor's session token, from POST /v1/init-session"),
        )
        .security_scheme("adminKey", bearer("The project's admin key"))
        .security_scheme(
            "memberSession",
            bearer("A member's session secret, from POST /v1/projects/{projectId}/sign-in"),
        )
        .security_scheme(
            "memberCookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::accounts::COOKIE,
                "A member's session cookie, set by the sign-in; a request that changes something also sends the session's X-CSRF-Token",
            ))),
        )
        .security_scheme(
            "operatorToken",
            bearer("The operator token (FLEETY_OPERATOR_TOKEN)"),
        )
        .security_scheme(
            "inboundSecret",
            bearer("The inbound email secret (FLEETY_INBOUND_EMAIL_SECRET)"),
        )
        .security_scheme(
            "inboundBasic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "The inbound email secret (FLEETY_INBOUND_EMAIL_SECRET) as the password; any user name",
                    ))
                    .build(),
            ),
        )
        .security_scheme(
            "feedToken",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "A one-minute token from POST /v1/projects/{projectId}/feed-token",
            ))),
        );
    for (name, schema) in schemas {
        components = components.schema(name, schema);
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Fleety server")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "A self-hostable, multi-tenant, realtime customer-support server. Every refusal is `{\"error\": \"...\"}` with its status.",
                ))
                .build(),
        )
        .paths(paths)
        .tags(Some(tags.into_iter().map(|t| TagBuilder::new().name(t).build())))
        .components(Some(components.build()))
        .build()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn doc() -> Value {
        super::document().clone()
    }

    #[test]
    fn every_route_of_the_table_is_an_operation_and_no_other() {
        let doc = doc();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                operations += 1;
                let route = super::table()
                    .iter()
                    .find(|r| r.path == path && r.method.as_str().eq_ignore_ascii_case(method));
                assert!(route.is_some(), "{method} {path} is in no route");
                assert_eq!(op["operationId"], route.unwrap().id);
            }
        }
        assert_eq!(operations, super::table().len());
    }

    #[test]
    fn every_parameter_has_a_schema_and_every_refusal_the_error_shape() {
        let doc = doc();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    assert!(p["schema"].is_object(), "{method} {path}: {p}");
                }
                for (status, answer) in op["responses"].as_object().unwrap() {
                    if status.starts_with('4') || status.starts_with('5') {
                        assert_eq!(
                            answer["content"]["application/json"]["schema"]["$ref"],
                            "#/components/schemas/Error",
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_reference_names_a_schema_of_the_document() {
        let doc = doc();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(
                schemas.contains_key(name),
                "{name} is referenced but not defined"
            );
        }
    }

    #[test]
    fn operation_ids_are_unique_and_links_name_real_operations() {
        let doc = doc();
        let mut ids = std::collections::HashSet::new();
        for r in super::table() {
            assert!(ids.insert(r.id), "{} twice", r.id);
        }
        for r in super::table() {
            for link in &r.links {
                assert!(
                    ids.contains(link.operation),
                    "{} links to {}",
                    r.id,
                    link.operation
                );
            }
        }
        assert!(doc["components"]["securitySchemes"]["feedToken"].is_object());
        let created = &doc["paths"]["/v1/tickets/{projectId}"]["post"]["responses"]["201"];
        assert_eq!(created["links"]["GetTicket"]["operationId"], "getTicket");
        let event = &doc["components"]["schemas"]["PromptEvent"]["properties"]["data"];
        assert!(event["oneOf"][1]["contentSchema"].is_object(), "{event}");
    }
}

//! The OpenAPI 3.1 document of the HTTP API, served at `/v1/openapi.json`.
//!
//! It is built with utoipa from [`ENDPOINTS`], the same list `routes.rs` documents; the
//! integration test `openapi_lists_every_route_and_every_listed_route_exists` calls each listed
//! operation against a real server, so the document and the router cannot drift apart.

use std::sync::OnceLock;

use bytes::Bytes;
use http::StatusCode;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Required,
    ResponseBuilder,
};
use warp::reply::Response;

/// Who may call an endpoint.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    AdminKey,
    Operator,
    FeedToken,
    SessionToken,
}

pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
    pub body: bool,
    pub websocket: bool,
    pub query: &'static [&'static str],
    pub responses: &'static [(&'static str, &'static str)],
}

const fn ep(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    access: Access,
) -> Endpoint {
    Endpoint {
        method,
        path,
        summary,
        access,
        body: false,
        websocket: false,
        query: &[],
        responses: &[],
    }
}

pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        body: true,
        responses: &[
            ("200", "token, expires_at, project_id"),
            ("404", "unknown project"),
            ("429", "rate limited"),
        ],
        ..ep(
            "POST",
            "/v1/init-session",
            "Start an anonymous session: a 5-minute HS256 token",
            Access::Public,
        )
    },
    Endpoint {
        responses: &[
            ("200", "session_id, project_id, expires_at"),
            ("401", "missing, expired, tampered or foreign token"),
        ],
        ..ep(
            "GET",
            "/v1/session",
            "Describe the caller's own session token",
            Access::SessionToken,
        )
    },
    Endpoint {
        responses: &[
            ("200", "token, expires_at, project_id: the same session, a fresh token"),
            ("401", "missing, expired or forged token, or a session older than a day"),
            ("429", "rate limited"),
        ],
        ..ep(
            "POST",
            "/v1/session/renew",
            "Renew the caller's session token before it expires, keeping the session",
            Access::SessionToken,
        )
    },
    Endpoint {
        body: true,
        responses: &[
            ("201", "the new ticket"),
            ("400", "invalid title or description"),
            ("403", "origin not allowed"),
            ("404", "unknown project"),
            ("429", "rate limited"),
        ],
        ..ep(
            "POST",
            "/v1/tickets/{projectId}",
            "Create a ticket",
            Access::Public,
        )
    },
    Endpoint {
        query: &["limit", "before"],
        responses: &[
            ("200", "the ticket with its messages and read_by"),
            ("404", "unknown ticket"),
            ("429", "rate limited"),
        ],
        ..ep(
            "GET",
            "/v1/tickets/{projectId}/{slug}",
            "Read a ticket and its messages",
            Access::Public,
        )
    },
    Endpoint {
        body: true,
        responses: &[
            ("200", "the ticket after the change"),
            ("400", "unknown status"),
            ("401", "no key"),
            ("403", "wrong key"),
        ],
        ..ep(
            "PATCH",
            "/v1/tickets/{projectId}/{slug}",
            "Change a ticket's status (open, pending, resolved, closed) and/or its assignee (a name, or null)",
            Access::AdminKey,
        )
    },
    Endpoint {
        body: true,
        responses: &[
            ("201", "Message added successfully"),
            ("400", "invalid content"),
            ("403", "author admin without the admin key"),
            ("404", "unknown ticket"),
            ("409", "ticket closed"),
            ("429", "rate limited"),
        ],
        ..ep(
            "POST",
            "/v1/tickets/{projectId}/{slug}/messages",
            "Post a message to a ticket",
            Access::Public,
        )
    },
    Endpoint {
        body: true,
        responses: &[
            ("200", "Messages marked as read"),
            ("403", "reader admin without the admin key"),
            ("404", "unknown ticket"),
            ("429", "rate limited"),
        ],
        ..ep(
            "PATCH",
            "/v1/tickets/{projectId}/{slug}/messages/read",
            "Mark every message of a ticket read",
            Access::Public,
        )
    },
    Endpoint {
        websocket: true,
        query: &["since"],
        responses: &[
            (
                "101",
                "subscribed; then new_message, status_change, ticket_update, error events",
            ),
            ("404", "unknown ticket"),
            ("403", "origin not allowed"),
        ],
        ..ep(
            "GET",
            "/v1/tickets/{projectId}/{slug}/ws",
            "A ticket's realtime events (WebSocket)",
            Access::Public,
        )
    },
    Endpoint {
        responses: &[
            ("200", "the project's settings"),
            ("401", "no key"),
            ("403", "wrong key"),
        ],
        ..ep(
            "GET",
            "/v1/projects/{projectId}",
            "Read the project's settings",
            Access::AdminKey,
        )
    },
    Endpoint {
        body: true,
        responses: &[
            ("200", "the project's settings"),
            ("400", "invalid name or origin"),
        ],
        ..ep(
            "PATCH",
            "/v1/projects/{projectId}",
            "Update the project's name or allowed origins",
            Access::AdminKey,
        )
    },
    Endpoint {
        query: &["status", "q", "limit", "cursor"],
        responses: &[(
            "200",
            "tickets newest first (titles containing q, when given) and next_cursor",
        )],
        ..ep(
            "GET",
            "/v1/projects/{projectId}/tickets",
            "List the project's tickets",
            Access::AdminKey,
        )
    },
    Endpoint {
        responses: &[("200", "a one-minute token and the feed URL")],
        ..ep(
            "POST",
            "/v1/projects/{projectId}/feed-token",
            "Get a token for the agent inbox socket",
            Access::AdminKey,
        )
    },
    Endpoint {
        websocket: true,
        query: &["token"],
        responses: &[
            (
                "101",
                "every event of every ticket, tagged with the ticket slug",
            ),
            ("401", "missing or bad token"),
        ],
        ..ep(
            "GET",
            "/v1/projects/{projectId}/feed",
            "The project's agent inbox (WebSocket)",
            Access::FeedToken,
        )
    },
    Endpoint {
        body: true,
        responses: &[
            ("200", "text/event-stream of data: {\"content\": ...} events, then data: [DONE]"),
            ("400", "empty or over-long prompt"),
            ("401", "missing, expired or tampered session token"),
            ("429", "a session or project chat quota is used up (Retry-After)"),
            ("502", "the language model failed"),
            ("504", "the language model did not answer in time"),
        ],
        ..ep(
            "POST",
            "/v1/chat",
            "Ask the assistant one question; the answer streams as SSE",
            Access::SessionToken,
        )
    },
    Endpoint {
        body: true,
        responses: &[
            ("200", "text/event-stream of OpenAI-style deltas then data: [DONE]; or application/json {type: tool_call, message, ticket_slug} when the assistant opened a ticket"),
            ("400", "system role, bad roles, too many or too long messages"),
            ("401", "missing, expired or tampered session token"),
            ("429", "a session or project chat quota is used up (Retry-After)"),
            ("502", "the language model failed"),
            ("504", "the language model did not answer in time"),
        ],
        ..ep(
            "POST",
            "/v1/chat/tools",
            "Chat with tool calling: the assistant may open a ticket",
            Access::SessionToken,
        )
    },
    Endpoint {
        query: &["q", "limit"],
        responses: &[
            ("200", "results: the best passage of each matching article, best first"),
            ("400", "missing or over-long q, bad limit"),
            ("403", "origin not allowed"),
            ("404", "unknown project"),
            ("429", "rate limited"),
        ],
        ..ep(
            "GET",
            "/v1/kb/{projectId}/search",
            "Search the project's help-center articles",
            Access::Public,
        )
    },
    Endpoint {
        responses: &[("200", "articles, most recently changed first")],
        ..ep(
            "GET",
            "/v1/projects/{projectId}/kb/articles",
            "List knowledge-base articles",
            Access::AdminKey,
        )
    },
    Endpoint {
        body: true,
        responses: &[
            ("201", "the new article"),
            ("400", "invalid title, body or tags"),
            ("409", "the knowledge base is full"),
        ],
        ..ep(
            "POST",
            "/v1/projects/{projectId}/kb/articles",
            "Create a knowledge-base article",
            Access::AdminKey,
        )
    },
    Endpoint {
        responses: &[("200", "the article"), ("404", "unknown article")],
        ..ep(
            "GET",
            "/v1/projects/{projectId}/kb/articles/{articleId}",
            "Read an article",
            Access::AdminKey,
        )
    },
    Endpoint {
        body: true,
        responses: &[
            ("200", "the article after the change"),
            ("400", "invalid title, body or tags"),
            ("404", "unknown article"),
        ],
        ..ep(
            "PATCH",
            "/v1/projects/{projectId}/kb/articles/{articleId}",
            "Change an article's title, body or tags",
            Access::AdminKey,
        )
    },
    Endpoint {
        responses: &[("200", "deleted"), ("404", "unknown article")],
        ..ep(
            "DELETE",
            "/v1/projects/{projectId}/kb/articles/{articleId}",
            "Delete an article",
            Access::AdminKey,
        )
    },
    Endpoint {
        responses: &[("200", "webhooks: the project's endpoints, without their secrets")],
        ..ep(
            "GET",
            "/v1/projects/{projectId}/webhooks",
            "List the project's webhook endpoints",
            Access::AdminKey,
        )
    },
    Endpoint {
        body: true,
        responses: &[
            ("201", "the endpoint and its signing secret, shown this once"),
            ("400", "invalid or internal URL, unknown or no events"),
            ("409", "the project has 20 endpoints already"),
        ],
        ..ep(
            "POST",
            "/v1/projects/{projectId}/webhooks",
            "Register a webhook endpoint: url, events",
            Access::AdminKey,
        )
    },
    Endpoint {
        responses: &[("200", "the endpoint"), ("404", "unknown endpoint")],
        ..ep(
            "GET",
            "/v1/projects/{projectId}/webhooks/{webhookId}",
            "Read a webhook endpoint",
            Access::AdminKey,
        )
    },
    Endpoint {
        body: true,
        responses: &[
            ("200", "the endpoint after the change"),
            ("400", "invalid URL or events"),
            ("404", "unknown endpoint"),
        ],
        ..ep(
            "PATCH",
            "/v1/projects/{projectId}/webhooks/{webhookId}",
            "Change a webhook endpoint's url, events or enabled",
            Access::AdminKey,
        )
    },
    Endpoint {
        responses: &[("200", "deleted"), ("404", "unknown endpoint")],
        ..ep(
            "DELETE",
            "/v1/projects/{projectId}/webhooks/{webhookId}",
            "Delete a webhook endpoint",
            Access::AdminKey,
        )
    },
    Endpoint {
        query: &["limit"],
        responses: &[
            ("200", "deliveries, newest first"),
            ("404", "unknown endpoint"),
        ],
        ..ep(
            "GET",
            "/v1/projects/{projectId}/webhooks/{webhookId}/deliveries",
            "A webhook endpoint's delivery log",
            Access::AdminKey,
        )
    },
    Endpoint {
        responses: &[
            ("202", "the delivery, due again at once"),
            ("404", "unknown endpoint or delivery"),
            ("409", "the endpoint is disabled"),
        ],
        ..ep(
            "POST",
            "/v1/projects/{projectId}/webhooks/{webhookId}/deliveries/{deliveryId}/replay",
            "Send a delivery again, with its id and body",
            Access::AdminKey,
        )
    },
    Endpoint {
        query: &["q", "limit"],
        responses: &[("200", "results, as the public search answers")],
        ..ep(
            "GET",
            "/v1/projects/{projectId}/kb/search",
            "Search the knowledge base as the assistant would",
            Access::AdminKey,
        )
    },
    Endpoint {
        responses: &[
            ("200", "ticket_slug, session_id and the chat's turns, oldest first"),
            ("404", "unknown ticket"),
        ],
        ..ep(
            "GET",
            "/v1/projects/{projectId}/tickets/{slug}/chat",
            "Read the chat with the assistant that led to a ticket",
            Access::AdminKey,
        )
    },
    Endpoint {
        responses: &[
            ("200", "notes: the ticket's internal notes, oldest first"),
            ("404", "unknown ticket"),
        ],
        ..ep(
            "GET",
            "/v1/projects/{projectId}/tickets/{slug}/notes",
            "Read a ticket's internal notes (agents only)",
            Access::AdminKey,
        )
    },
    Endpoint {
        body: true,
        responses: &[
            ("201", "the note: id, author, content, created_at"),
            ("400", "invalid author or content"),
            ("404", "unknown ticket"),
        ],
        ..ep(
            "POST",
            "/v1/projects/{projectId}/tickets/{slug}/notes",
            "Add an internal note, never shown to the visitor",
            Access::AdminKey,
        )
    },
    Endpoint {
        body: true,
        responses: &[
            ("201", "the project and its admin key, shown once"),
            ("401", "no token"),
            ("403", "wrong token or operator API disabled"),
            ("409", "id taken"),
        ],
        ..ep(
            "POST",
            "/v1/admin/projects",
            "Create a project",
            Access::Operator,
        )
    },
    Endpoint {
        responses: &[("200", "this document")],
        ..ep(
            "GET",
            "/v1/openapi.json",
            "This OpenAPI document",
            Access::Public,
        )
    },
    Endpoint {
        responses: &[("200", "the server is up")],
        ..ep("GET", "/healthz", "Liveness", Access::Public)
    },
];

fn method(m: &str) -> HttpMethod {
    match m {
        "POST" => HttpMethod::Post,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

pub fn document() -> &'static OpenApi {
    static DOC: OnceLock<OpenApi> = OnceLock::new();
    DOC.get_or_init(build)
}

fn build() -> OpenApi {
    let mut paths = Paths::new();
    for e in ENDPOINTS {
        let mut op = OperationBuilder::new().summary(Some(e.summary));
        for name in e
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True),
            );
        }
        for name in e.query {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(*name)
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False),
            );
        }
        if e.body {
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content("application/json", ContentBuilder::new().build())
                    .build(),
            ));
        }
        for (code, description) in e.responses {
            op = op.response(*code, ResponseBuilder::new().description(*description));
        }
        let scheme = match e.access {
            Access::Public => None,
            Access::AdminKey => Some("adminKey"),
            Access::Operator => Some("operatorToken"),
            Access::FeedToken => None,
            Access::SessionToken => Some("sessionToken"),
        };
        if let Some(scheme) = scheme {
            op = op.security(SecurityRequirement::new::<_, _, &str>(scheme, []));
        }
        if e.websocket {
            op = op.description(Some(
                "Upgrade to a WebSocket; events are JSON text frames {\"type\", \"payload\"}.",
            ));
        }
        paths.add_path_operation(e.path, vec![method(e.method)], op.build());
    }
    let bearer = || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Fleety server")
                .version(env!("CARGO_PKG_VERSION"))
                .build(),
        )
        .paths(paths)
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme("adminKey", bearer())
                .security_scheme("operatorToken", bearer())
                .security_scheme("sessionToken", bearer())
                .build(),
        ))
        .build()
}

pub fn document_response() -> warp::reply::Response {
    static JSON: OnceLock<Bytes> = OnceLock::new();
    let body = JSON
        .get_or_init(|| Bytes::from(document().to_json().unwrap_or_else(|_| "{}".into())))
        .clone();
    let resp: Response = super::json_bytes(StatusCode::OK, body);
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_openapi_3_1_and_lists_every_endpoint() {
        let doc: serde_json::Value =
            serde_json::from_str(&super::document().to_json().unwrap()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for e in super::ENDPOINTS {
            assert!(
                doc["paths"][e.path][e.method.to_ascii_lowercase()].is_object(),
                "{} {}",
                e.method,
                e.path
            );
        }
    }
}

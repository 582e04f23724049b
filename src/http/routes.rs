//! Every route of the server, in one table ([`table`]). Read a route here, then follow its
//! handler. The router (`router.rs`) dispatches by this table, the metrics label each request
//! with its route's path, and the OpenAPI document (`openapi.rs`) describes each route from it:
//! a route exists in all three or in none.
//!
//! Each entry is the route's method, path, `operationId` and summary, who may call it (its
//! [`Access`]), what it reads and answers, and how its handler is built: the guard first, then
//! what else it reads, then the handler function.

use std::sync::{Arc, LazyLock};

use fleety_actors::domain::{IdempotencyKey, ProjectId, Slug};
use http::Method;
use warp::Filter;

use super::route::{object, schema, uuid, Access, Build, Content, Limit, Route};
use super::{
    assets, assignees, assistant, audit, canned, chat, contacts, emails, export, inbound, kb,
    members, notifications, openapi, projects_api, session, tickets, tokens, totp, unanswered,
    visitor_address, visitor_email, webhooks, ws, Ctx,
};

/// The routes, built once.
pub fn table() -> &'static [Route] {
    static TABLE: LazyLock<Vec<Route>> = LazyLock::new(routes);
    &TABLE
}

/// Builds each route's handler for a server.
pub fn handlers(ctx: &Arc<Ctx>) -> Vec<super::route::Handler> {
    table()
        .iter()
        .map(|route| (route.handler)(&Build { ctx, route }))
        .collect()
}

const PROJECT: &str = "The project's id.";
const SLUG: &str = "The ticket's slug.";
const TICKET: (&str, &str) = ("projectId", "$request.path.projectId");
const CREATED_SLUG: (&str, &str) = ("slug", "$response.body#/slug");
const CREATED_ID: &str = "$response.body#/id";

fn routes() -> Vec<Route> {
    use Access::*;
    use Content::*;
    let get = || Method::GET;
    let post = || Method::POST;
    let patch = || Method::PATCH;
    let put = || Method::PUT;
    let delete = || Method::DELETE;
    vec![
        // The public API a widget calls.
        Route::new(post(), "/v1/init-session", "initSession", "Start an anonymous visitor session", SessionLimit, |b| {
            b.session_limit().and(b.ctx()).and(b.meta()).and(b.json()).then(session::init).boxed()
        })
        .tag("sessions")
        .describe("A five-minute session token for the chat endpoints, for a project whose origin the browser is on.")
        .body::<session::InitSession>(Limit::Standard)
        .answers(200, "The session token", Json(schema::<session::IssuedSession>))
        .refuses(400, "A malformed identity, or the project has no identity secret")
        .refuses(401, "The identity does not verify: a wrong user_hash, or a token that is forged, expired or for another project")
        .refuses(404, "No such project"),
        Route::new(get(), "/v1/session", "describeSession", "Describe the caller's own session token", Session, |b| {
            b.session().then(session::describe).boxed()
        })
        .tag("sessions")
        .answers(200, "The session", Json(schema::<session::SessionInfo>)),
        Route::new(get(), "/v1/session/tickets", "listSessionTickets", "List the identified visitor's own tickets", Session, |b| {
            b.session().and(b.ctx()).then(contacts::session_tickets).boxed()
        })
        .tag("sessions")
        .describe("For a session that names a verified contact: the contact's tickets, from any device, newest first (the newest 50). Empty for an anonymous session.")
        .answers(200, "The contact and their tickets", Json(schema::<contacts::SessionTickets>)),
        Route::new(post(), "/v1/session/renew", "renewSession", "Renew a session token before it expires, keeping the session", CountedSession, |b| {
            b.session_limit().and(b.session()).and(b.ctx()).then(session::renew).boxed()
        })
        .tag("sessions")
        .describe("A session older than a day is refused (401): the widget then starts a new one.")
        .answers(200, "A fresh token for the same session", Json(schema::<session::IssuedSession>)),
        Route::new(post(), "/v1/tickets/{projectId}", "createTicket", "Open a ticket", Public, |b| {
            b.public().and(b.ctx()).and(b.json()).then(tickets::create).boxed()
        })
        .tag("tickets")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("With a session token as the bearer, the ticket remembers the visitor's session. When the project's `ticket_access` is `session`, the answer carries a `ticket_key` unless a verified contact's session opened the ticket.")
        .reads_session()
        .body::<tickets::CreateTicket>(Limit::Standard)
        .answers(201, "The new ticket", Json(schema::<tickets::CreatedTicket>))
        .link("GetTicket", "getTicket", &[TICKET, CREATED_SLUG])
        .link("PostMessage", "postMessage", &[TICKET, CREATED_SLUG])
        .link("MarkRead", "markRead", &[TICKET, CREATED_SLUG])
        .link("ChangeTicket", "changeTicket", &[TICKET, CREATED_SLUG])
        .link("ListNotes", "listNotes", &[TICKET, CREATED_SLUG])
        .link("AddNote", "addNote", &[TICKET, CREATED_SLUG])
        .link("Timeline", "listTimeline", &[TICKET, CREATED_SLUG])
        .link("TicketChat", "ticketChat", &[TICKET, CREATED_SLUG]),
        Route::new(get(), "/v1/tickets/{projectId}/{slug}", "getTicket", "Read a ticket and its messages", Public, |b| {
            b.param("slug").and(b.public()).and(b.ctx()).and(b.query()).then(tickets::get).boxed()
        })
        .tag("tickets")
        .counted_per_session()
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("slug", SLUG, schema::<Slug>)
        .header::<tickets::TicketKeyHeader>("X-Ticket-Key", tickets::TICKET_KEY_DOC)
        .describe("Every message in order. With `limit` or `before`, one page: the newest `limit` messages older than `before`, and `next_before` when older ones exist.")
        .query::<tickets::GetQuery>()
        .answers(200, "The ticket", Json(schema::<fleety_actors::events::TicketView>))
        .refuses(404, "No such project or ticket"),
        Route::new(patch(), "/v1/tickets/{projectId}/{slug}", "changeTicket", "Change a ticket's status, its assignee, or both", Agent, |b| {
            b.param("slug").and(b.member()).and(b.meta()).and(b.ctx()).and(b.json()).then(tickets::change).boxed()
        })
        .tag("agents")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("slug", SLUG, schema::<Slug>)
        .body::<tickets::ChangeTicket>(Limit::Standard)
        .answers(200, "The ticket after the change", Json(schema::<fleety_actors::events::TicketSummary>))
        .refuses(404, "No such ticket"),
        Route::new(delete(), "/v1/projects/{projectId}/tickets/{slug}", "eraseTicket", "Erase a ticket and everything that carries its words", Admin, |b| {
            b.param("slug").and(b.audited()).and(b.ctx()).then(tickets::erase).boxed()
        })
        .tag("agents")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("slug", SLUG, schema::<Slug>)
        .describe("Erases the ticket, its messages, internal notes and timeline, the assistant transcript of the chat that opened it, its entries in the ticket search index and the webhook deliveries about it. Its open sockets get a last `ticket_deleted` event and are closed; afterwards the ticket is unknown (404) to every request. On the embedded store the words are gone from the data directory's files when this answers. Recorded in the audit trail by slug only. A second DELETE of the same ticket answers 404.")
        .answers(200, "Erased", Json(schema::<super::Done>))
        .refuses(404, "No such ticket (or it was erased already)"),
        Route::new(post(), "/v1/tickets/{projectId}/{slug}/messages", "postMessage", "Post a message to a ticket", Public, |b| {
            b.param("slug").and(b.public()).and(b.ctx()).and(b.meta()).and(b.json()).then(tickets::post_message).boxed()
        })
        .tag("tickets")
        .counted_per_session()
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("slug", SLUG, schema::<Slug>)
        .header::<tickets::TicketKeyHeader>("X-Ticket-Key", tickets::TICKET_KEY_DOC)
        .describe("`author: admin` needs the project's admin key or a signed-in member; a member's message carries `agent`, the member who wrote it. A retry with the same `Idempotency-Key` is answered with the original message instead of posting it again.")
        .header::<IdempotencyKey>("Idempotency-Key", "Names this request, so a retry of it is not carried out twice.")
        .body::<tickets::PostMessage>(Limit::Standard)
        .answers(201, "The message, as stored", Json(schema::<tickets::PostedMessage>))
        .refuses(403, "`author: admin` without the admin key or a member's session, or an origin the project does not allow")
        .refuses(404, "No such project or ticket")
        .refuses(409, "The ticket is closed, or a request with this Idempotency-Key is still in progress")
        .refuses(422, "This Idempotency-Key was used for a different message"),
        Route::new(patch(), "/v1/tickets/{projectId}/{slug}/messages/read", "markRead", "Mark every message of a ticket read", Public, |b| {
            let language = warp::header::optional::<String>("accept-language");
            b.param("slug").and(b.public()).and(b.ctx()).and(language).and(b.optional_json()).then(tickets::mark_read).boxed()
        })
        .tag("tickets")
        .counted_per_session()
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("slug", SLUG, schema::<Slug>)
        .header::<tickets::TicketKeyHeader>("X-Ticket-Key", tickets::TICKET_KEY_DOC)
        .describe("Without a body the reader is the visitor (`user`). `reader: admin` needs the project's admin key.")
        .optional_body::<tickets::MarkRead>()
        .answers(200, "Read up to the newest message", Json(schema::<tickets::MarkedRead>))
        .refuses(403, "`reader: admin` without the admin key, or an origin the project does not allow")
        .refuses(404, "No such project or ticket"),
        Route::new(post(), "/v1/tickets/{projectId}/{slug}/satisfaction", "rateTicket", "Rate one's satisfaction with a resolved ticket", Public, |b| {
            b.param("slug").and(b.public()).and(b.ctx()).and(b.json()).then(tickets::rate).boxed()
        })
        .tag("tickets")
        .counted_per_session()
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("slug", SLUG, schema::<Slug>)
        .header::<tickets::TicketKeyHeader>("X-Ticket-Key", tickets::TICKET_KEY_DOC)
        .describe("The visitor's CSAT rating, given once, after the ticket was resolved or closed. Sent as the `ticket.rated` webhook and told to the ticket's watchers as a `ticket_update`.")
        .body::<tickets::RateTicket>(Limit::Standard)
        .answers(201, "The ticket with its rating", Json(schema::<fleety_actors::events::TicketSummary>))
        .refuses(403, "An origin the project does not allow")
        .refuses(404, "No such project or ticket")
        .refuses(409, "The ticket was rated already, is not resolved yet, or the project asks for no ratings"),
        Route::new(put(), "/v1/tickets/{projectId}/{slug}/visitor-email", "setVisitorEmail", "Give, change or remove the address replies are emailed to", Public, |b| {
            b.param("slug").and(b.public()).and(b.ctx()).and(b.json()).then(visitor_address::set).boxed()
        })
        .tag("tickets")
        .counted_per_session()
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("slug", SLUG, schema::<Slug>)
        .header::<tickets::TicketKeyHeader>("X-Ticket-Key", tickets::TICKET_KEY_DOC)
        .describe("The widget's optional \"get replies by email\" field: when an agent replies and the visitor is away, the replies they have not read are emailed to this address. Stored on the ticket's visitor with `email_unverified: true`, since nobody checked it; null removes it. Agents see it when they next read the ticket: it is no event on the ticket's socket or the agents' feed.")
        .body::<visitor_address::SetVisitorEmail>(Limit::Standard)
        .answers(200, "The ticket with the visitor's address", Json(schema::<fleety_actors::events::TicketSummary>))
        .refuses(400, "Not an email address, or `email` missing")
        .refuses(403, "An origin the project does not allow")
        .refuses(404, "No such project or ticket")
        .refuses(409, "The ticket's verified contact has an email address, which replies go to"),
        Route::new(get(), "/v1/tickets/{projectId}/{slug}/ws", "ticketSocket", "A ticket's realtime events (WebSocket)", Public, |b| {
            let language = warp::header::optional::<String>("accept-language");
            b.param("slug").and(b.websocket()).and(b.public()).and(b.ctx()).and(language).and(b.query()).then(ws::ticket_socket).boxed()
        })
        .tag("realtime")
        .counted_per_session()
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("slug", SLUG, schema::<Slug>)
        .header::<tickets::TicketKeyHeader>("X-Ticket-Key", tickets::TICKET_KEY_DOC)
        .describe("Upgrades to a WebSocket whose text frames are `TicketEvent`s: first `subscribed`, then (with `since`) every message after it, then each change as it happens. The client may send `{\"type\": \"typing\"}`.")
        .query::<ws::TicketSocketQuery>()
        .frames(schema::<ws::TicketEvent>)
        .answers(101, "Switching to the WebSocket protocol", Nothing)
        .refuses(404, "No such project or ticket")
        .refuses(409, "Too many missed messages to replay: read the ticket with GET and connect without `since`"),
        Route::new(get(), "/v1/kb/{projectId}/search", "searchHelpCenter", "Search the project's help-center articles", Public, |b| {
            b.public().and(b.ctx()).and(b.query()).then(kb::public_search).boxed()
        })
        .tag("knowledge base")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .query::<kb::SearchQuery>()
        .answers(200, "The best passage of each matching article, best first", Json(schema::<kb::SearchResults>)),
        Route::new(get(), "/v1/kb/{projectId}/articles/{articleId}", "readHelpCenterArticle", "Read one help-center article", Public, |b| {
            b.param("articleId").and(b.public()).and(b.ctx()).then(kb::public_get).boxed()
        })
        .tag("knowledge base")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("articleId", "The article's id, as a search result gives it.", uuid)
        .describe("The whole article a search result points to, so a widget can show it where the matching passage is.")
        .answers(200, "The article", Json(schema::<kb::ArticleView>))
        .refuses(404, "No such article"),
        Route::new(post(), "/v1/chat", "chat", "Ask the assistant one question", Session, |b| {
            b.session().and(b.ctx()).and(b.json()).then(chat::prompt).boxed()
        })
        .tag("chat")
        .describe("The answer streams as server-sent events `data: {\"content\": \"...\"}`, then `data: [DONE]`; an error after the stream began comes as `data: {\"error\": \"...\"}`.")
        .body::<chat::PromptRequest>(Limit::Large)
        .answers(200, "The answer, streamed", EventStream(schema::<chat::PromptEvent>))
        .refuses(429, "A session or project chat quota is used up, or an answer is still streaming for this session (see Retry-After)")
        .refuses(502, "The language model failed")
        .refuses(504, "The language model did not answer in time"),
        Route::new(post(), "/v1/chat/tools", "chatWithTools", "Chat with the assistant, which may open a ticket", Session, |b| {
            b.session().and(b.ctx()).and(b.json()).then(chat::tools).boxed()
        })
        .tag("chat")
        .describe("Text streams as OpenAI-style deltas `data: {\"choices\":[{\"delta\":{\"content\":\"...\"}}]}`, then `data: [DONE]`. When the assistant opens a ticket before saying anything, the answer is one JSON `tool_call` instead.")
        .body::<chat::ToolsRequest>(Limit::Large)
        .answers(200, "The answer, streamed; or the ticket the assistant opened", EventStreamOrJson(schema::<chat::ToolsEvent>, schema::<chat::ToolCallAnswer>))
        .refuses(429, "A session or project chat quota is used up, or an answer is still streaming for this session (see Retry-After)")
        .refuses(502, "The language model failed")
        .refuses(504, "The language model did not answer in time"),
        Route::new(post(), "/v1/chat/turns/{turnId}/feedback", "rateAnswer", "Rate one of the assistant's answers, thumbs up or down", CountedSession, |b| {
            b.param("turnId").and(b.session_limit()).and(b.session()).and(b.ctx()).and(b.json()).then(assistant::feedback).boxed()
        })
        .tag("chat")
        .param("turnId", "The answer's `turn_id`, from its chat frames.", schema::<String>)
        .describe("Only the session's own answers; a later rating replaces the earlier. Agents see the rating in the ticket's chat.")
        .body::<assistant::NewFeedback>(Limit::Standard)
        .answers(200, "The rating, as stored", Json(schema::<assistant::Feedback>))
        .refuses(404, "The session has no answer with this id"),
        // The agents' API, with the project's admin key.
        Route::new(get(), "/v1/projects/{projectId}", "getProject", "Read the project's settings", Agent, |b| {
            b.agent().then(projects_api::get).boxed()
        })
        .tag("projects")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .answers(200, "The project", Json(schema::<projects_api::ProjectView>)),
        Route::new(patch(), "/v1/projects/{projectId}", "updateProject", "Change the project's name, allowed origins or assistant", Admin, |b| {
            b.audited().and(b.ctx()).and(b.json()).then(projects_api::update).boxed()
        })
        .tag("projects")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .body::<projects_api::UpdateProject>(Limit::Standard)
        .answers(200, "The project after the change", Json(schema::<projects_api::ProjectView>)),
        Route::new(get(), "/v1/projects/{projectId}/tickets", "listTickets", "List the project's tickets, newest first", Agent, |b| {
            b.member().and(b.ctx()).and(b.query()).then(projects_api::list_tickets).boxed()
        })
        .tag("agents")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .query::<projects_api::ListQuery>()
        .answers(200, "A page of tickets, and the cursor of the next", Json(schema::<projects_api::TicketList>)),
        Route::new(get(), "/v1/projects/{projectId}/assignees", "listAssignees", "The members tickets may be assigned to", Agent, |b| {
            b.agent().and(b.ctx()).then(assignees::list).boxed()
        })
        .tag("agents")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("Every member who is not deactivated, by name: what an agent picks an assignee from. Each is the `assignee_member` a ticket would carry.")
        .answers(200, "The members, by name", Json(schema::<assignees::AssigneeList>)),
        Route::new(post(), "/v1/projects/{projectId}/feed-token", "feedToken", "A one-minute token for the inbox socket", Agent, |b| {
            b.member().and(b.ctx()).then(projects_api::feed_token).boxed()
        })
        .tag("realtime")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .answers(200, "The token and the socket's URL", Json(schema::<projects_api::FeedToken>)),
        Route::new(get(), "/v1/projects/{projectId}/feed", "projectFeed", "Every event of every ticket of the project (WebSocket)", Feed, |b| {
            b.websocket().and(b.feed()).and(b.ctx()).then(ws::feed_socket).boxed()
        })
        .tag("realtime")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("Upgrades to a WebSocket whose text frames are `FeedEvent`s: each ticket event, tagged with the ticket's slug, plus `ticket_created` and the agents-only `note_added`. Agents may send `{\"type\": \"typing\", \"ticket\": \"<slug>\"}`. A member's socket closes with code 4401 as soon as the session its feed token came from ends (sign-out, a new password, deactivation).")
        .frames(schema::<ws::FeedEvent>)
        .answers(101, "Switching to the WebSocket protocol", Nothing),
        Route::new(get(), "/v1/projects/{projectId}/tickets/{slug}/chat", "ticketChat", "The chat with the assistant that led to a ticket", Agent, |b| {
            b.param("slug").and(b.agent()).and(b.ctx()).then(kb::ticket_chat).boxed()
        })
        .tag("agents")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("slug", SLUG, schema::<Slug>)
        .answers(200, "The chat's turns, oldest first", Json(schema::<kb::TicketChat>))
        .refuses(404, "No such ticket"),
        Route::new(get(), "/v1/projects/{projectId}/tickets/{slug}/notes", "listNotes", "A ticket's internal notes", Agent, |b| {
            b.param("slug").and(b.agent()).and(b.ctx()).then(tickets::notes).boxed()
        })
        .tag("agents")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("slug", SLUG, schema::<Slug>)
        .answers(200, "The notes, oldest first", Json(schema::<tickets::NoteList>))
        .refuses(404, "No such ticket"),
        Route::new(get(), "/v1/projects/{projectId}/tickets/{slug}/timeline", "listTimeline", "Who changed a ticket's status, assignee and tags, and when", Agent, |b| {
            b.param("slug").and(b.agent()).and(b.ctx()).then(tickets::timeline).boxed()
        })
        .tag("agents")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("slug", SLUG, schema::<Slug>)
        .describe("The ticket's timeline, oldest first: one entry per field a change touched, naming the member who acted (or the admin key, or the visitor whose reply reopened the ticket). Entry ids order with message and note ids.")
        .answers(200, "The timeline entries, oldest first", Json(schema::<tickets::Timeline>))
        .refuses(404, "No such ticket"),
        Route::new(post(), "/v1/projects/{projectId}/tickets/{slug}/notes", "addNote", "Add an internal note, never shown to the visitor", Agent, |b| {
            b.param("slug").and(b.audited()).and(b.ctx()).and(b.json()).then(tickets::add_note).boxed()
        })
        .tag("agents")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("slug", SLUG, schema::<Slug>)
        .body::<tickets::NewNote>(Limit::Standard)
        .answers(201, "The note", Json(schema::<fleety_actors::events::NoteView>))
        .refuses(404, "No such ticket"),
        Route::new(get(), "/v1/projects/{projectId}/kb/articles", "listArticles", "List the knowledge base's articles", Agent, |b| {
            b.agent().and(b.ctx()).then(kb::list).boxed()
        })
        .tag("knowledge base")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .answers(200, "The articles, most recently changed first", Json(schema::<kb::ArticleList>)),
        Route::new(post(), "/v1/projects/{projectId}/kb/articles", "createArticle", "Add an article to the knowledge base", Admin, |b| {
            b.audited().and(b.ctx()).and(b.json()).then(kb::create).boxed()
        })
        .tag("knowledge base")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .body::<kb::NewArticle>(Limit::Large)
        .answers(201, "The new article", Json(schema::<kb::ArticleView>))
        .refuses(409, "The knowledge base is full")
        .link("GetArticle", "getArticle", &[TICKET, ("articleId", CREATED_ID)])
        .link("UpdateArticle", "updateArticle", &[TICKET, ("articleId", CREATED_ID)])
        .link("DeleteArticle", "deleteArticle", &[TICKET, ("articleId", CREATED_ID)]),
        Route::new(get(), "/v1/projects/{projectId}/kb/articles/{articleId}", "getArticle", "Read an article", Agent, |b| {
            b.param("articleId").and(b.agent()).and(b.ctx()).then(kb::get).boxed()
        })
        .tag("knowledge base")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("articleId", "The article's id.", uuid)
        .answers(200, "The article", Json(schema::<kb::ArticleView>))
        .refuses(404, "No such article"),
        Route::new(patch(), "/v1/projects/{projectId}/kb/articles/{articleId}", "updateArticle", "Change an article's title, body, tags, language or link", Admin, |b| {
            b.param("articleId").and(b.audited()).and(b.ctx()).and(b.json()).then(kb::update).boxed()
        })
        .tag("knowledge base")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("articleId", "The article's id.", uuid)
        .body::<kb::ArticlePatch>(Limit::Large)
        .answers(200, "The article after the change", Json(schema::<kb::ArticleView>))
        .refuses(404, "No such article"),
        Route::new(delete(), "/v1/projects/{projectId}/kb/articles/{articleId}", "deleteArticle", "Delete an article", Admin, |b| {
            b.param("articleId").and(b.audited()).and(b.ctx()).then(kb::delete).boxed()
        })
        .tag("knowledge base")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("articleId", "The article's id.", uuid)
        .answers(200, "Deleted", Json(schema::<super::Done>))
        .refuses(404, "No such article"),
        Route::new(get(), "/v1/projects/{projectId}/kb/search", "searchArticles", "Search the knowledge base as the assistant would", Agent, |b| {
            b.agent().and(b.ctx()).and(b.query()).then(kb::agent_search).boxed()
        })
        .tag("knowledge base")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .query::<kb::SearchQuery>()
        .answers(200, "The best passage of each matching article, best first", Json(schema::<kb::SearchResults>)),
        Route::new(get(), "/v1/projects/{projectId}/kb/unanswered", "listUnansweredQuestions", "The questions the assistant could not answer, most asked first", Agent, |b| {
            b.agent().and(b.ctx()).and(b.query()).then(unanswered::list).boxed()
        })
        .tag("knowledge base")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("Questions the help center had nothing close to, and questions answered just before the visitor asked for a person. Trivial variants (case, punctuation, spacing) count as one; a project keeps the 500 asked most recently.")
        .query::<unanswered::ListQuery>()
        .answers(200, "The questions, most asked first", Json(schema::<unanswered::UnansweredList>)),
        Route::new(delete(), "/v1/projects/{projectId}/kb/unanswered/{questionId}", "dismissUnansweredQuestion", "Take a question off the unanswered list", Admin, |b| {
            b.param("questionId").and(b.agent()).and(b.ctx()).then(unanswered::dismiss).boxed()
        })
        .tag("knowledge base")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("questionId", "The question's id.", schema::<unanswered::QuestionId>)
        .describe("Once an article answers it. Asked again later, it starts a new count.")
        .answers(200, "Dismissed", Json(schema::<super::Done>))
        .refuses(404, "No such question"),
        Route::new(get(), "/v1/projects/{projectId}/assistant/outcomes", "assistantOutcomes", "How the assistant's conversations ended over a time range", Agent, |b| {
            b.agent().and(b.ctx()).and(b.query()).then(assistant::outcomes).boxed()
        })
        .tag("agents")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("Conversations that started in `[from, to)`, counted by outcome as they stand now: resolved, escalated, abandoned, or still open; and the ratings their answers hold.")
        .query::<assistant::OutcomesQuery>()
        .answers(200, "The counts", Json(schema::<assistant::AssistantOutcomes>)),
        Route::new(get(), "/v1/projects/{projectId}/webhooks", "listWebhooks", "List the project's webhook endpoints", Admin, |b| {
            b.agent().and(b.ctx()).then(webhooks::list).boxed()
        })
        .tag("webhooks")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .answers(200, "The endpoints, without their secrets", Json(schema::<webhooks::WebhookList>)),
        Route::new(post(), "/v1/projects/{projectId}/webhooks", "createWebhook", "Register a webhook endpoint", Admin, |b| {
            b.audited().and(b.ctx()).and(b.json()).then(webhooks::create).boxed()
        })
        .tag("webhooks")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("The URL must be http or https and must not name an internal address. The signing secret is shown in this answer only.")
        .body::<webhooks::NewEndpoint>(Limit::Standard)
        .answers(201, "The endpoint and its signing secret", Json(schema::<webhooks::EndpointView>))
        .refuses(409, "The project has as many endpoints as it may")
        .link("GetWebhook", "getWebhook", &[TICKET, ("webhookId", CREATED_ID)])
        .link("UpdateWebhook", "updateWebhook", &[TICKET, ("webhookId", CREATED_ID)])
        .link("DeleteWebhook", "deleteWebhook", &[TICKET, ("webhookId", CREATED_ID)])
        .link("WebhookDeliveries", "webhookDeliveries", &[TICKET, ("webhookId", CREATED_ID)]),
        Route::new(get(), "/v1/projects/{projectId}/webhooks/{webhookId}", "getWebhook", "Read a webhook endpoint", Admin, |b| {
            b.param("webhookId").and(b.agent()).and(b.ctx()).then(webhooks::get).boxed()
        })
        .tag("webhooks")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("webhookId", "The endpoint's id.", uuid)
        .answers(200, "The endpoint", Json(schema::<webhooks::EndpointView>))
        .refuses(404, "No such endpoint"),
        Route::new(patch(), "/v1/projects/{projectId}/webhooks/{webhookId}", "updateWebhook", "Change a webhook endpoint's URL, events, or whether it is on", Admin, |b| {
            b.param("webhookId").and(b.audited()).and(b.ctx()).and(b.json()).then(webhooks::update).boxed()
        })
        .tag("webhooks")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("webhookId", "The endpoint's id.", uuid)
        .body::<webhooks::EndpointChange>(Limit::Standard)
        .answers(200, "The endpoint after the change", Json(schema::<webhooks::EndpointView>))
        .refuses(404, "No such endpoint"),
        Route::new(delete(), "/v1/projects/{projectId}/webhooks/{webhookId}", "deleteWebhook", "Delete a webhook endpoint", Admin, |b| {
            b.param("webhookId").and(b.audited()).and(b.ctx()).then(webhooks::delete).boxed()
        })
        .tag("webhooks")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("webhookId", "The endpoint's id.", uuid)
        .answers(200, "Deleted", Json(schema::<super::Done>))
        .refuses(404, "No such endpoint"),
        Route::new(get(), "/v1/projects/{projectId}/webhooks/{webhookId}/deliveries", "webhookDeliveries", "A webhook endpoint's delivery log, newest first", Admin, |b| {
            b.param("webhookId").and(b.agent()).and(b.ctx()).and(b.query()).then(webhooks::deliveries).boxed()
        })
        .tag("webhooks")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("webhookId", "The endpoint's id.", uuid)
        .query::<webhooks::LogQuery>()
        .answers(200, "The deliveries", Json(schema::<webhooks::DeliveryList>))
        .refuses(404, "No such endpoint"),
        Route::new(post(), "/v1/projects/{projectId}/webhooks/{webhookId}/deliveries/{deliveryId}/replay", "replayDelivery", "Send a delivery again, with its id and body", Admin, |b| {
            b.param("webhookId").and(b.param("deliveryId")).and(b.audited()).and(b.ctx()).then(webhooks::replay).boxed()
        })
        .tag("webhooks")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("webhookId", "The endpoint's id.", uuid)
        .param("deliveryId", "The delivery's id (its `webhook-id`).", schema::<webhooks::DeliveryId>)
        .answers(202, "The delivery, due again at once", Json(schema::<webhooks::DeliveryView>))
        .refuses(404, "No such endpoint or delivery")
        .refuses(409, "The endpoint is turned off"),
        // Members: signing in, the caller's own identity and sessions, and the project's members.
        Route::new(post(), "/v1/projects/{projectId}/sign-in", "signIn", "Sign a member in with their email and password", SignIn, |b| {
            b.sign_in().and(b.ctx()).and(b.meta()).and(b.json()).then(members::sign_in).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("Sets the session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) and answers the session's secret, to send as a bearer token instead, and its CSRF token, to send in `X-CSRF-Token` with each cookie-signed request that changes something. An unknown email and a wrong password get the same answer. Repeated failures, per account and per client, make the next attempt wait longer (429 with Retry-After).")
        .body::<members::SignIn>(Limit::Standard)
        .answers(200, "The member and their new session", Json(schema::<members::SignedInView>))
        .answers(202, "The password is right and the member has two-factor authentication on: no session yet; finish with `signInSecondFactor` and the challenge", Json(schema::<members::SecondFactorNeeded>))
        .refuses(401, "Wrong email or password, or a deactivated member")
        .refuses(429, "Too many failed sign-ins lately, or one still under way, for this account or from this client (see Retry-After)"),
        Route::new(post(), "/v1/projects/{projectId}/sign-in/second-factor", "signInSecondFactor", "Finish a sign-in with a code from the authenticator app, or a recovery code", SignIn, |b| {
            b.sign_in().and(b.ctx()).and(b.meta()).and(b.json()).then(members::sign_in_second_factor).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("The challenge from `signIn`'s 202 and either `code` (six digits; the current 30-second step or one either side, each code once) or `recovery_code` (each once). A challenge lasts five minutes and five wrong codes; wrong codes count on the brake of sign-ins. Answers as `signIn` does when it opens a session.")
        .body::<members::SignInSecondFactor>(Limit::Standard)
        .answers(200, "The member and their new session", Json(schema::<members::SignedInView>))
        .refuses(401, "A wrong code, or a challenge expired, used or unknown (sign in again)")
        .refuses(429, "Too many failed sign-ins or codes lately for this account or from this client (see Retry-After)"),
        Route::new(post(), "/v1/projects/{projectId}/sign-out", "signOut", "End the caller's session", Agent, |b| {
            b.member().and(b.ctx()).and(b.meta()).then(members::sign_out).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("Ends the session the request is signed in with and clears the cookie. With the admin key there is no session: only the cookie is cleared.")
        .answers(200, "Signed out", Json(schema::<super::Done>)),
        Route::new(get(), "/v1/projects/{projectId}/me", "getMe", "Who the caller is", Agent, |b| {
            b.member().and(b.ctx()).then(members::me).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("The signed-in member, their role and the session's CSRF token; for the admin key, the owner role and no member. `email_enabled` says whether this server sends email (invitations, password resets): when it does not, links are handed on by hand.")
        .answers(200, "The caller", Json(schema::<members::Me>)),
        Route::new(get(), "/v1/projects/{projectId}/me/sessions", "listMySessions", "The caller's live sessions, newest first", Agent, |b| {
            b.member().and(b.ctx()).then(members::sessions).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .answers(200, "The sessions", Json(schema::<members::SessionList>)),
        Route::new(delete(), "/v1/projects/{projectId}/me/sessions/{sessionId}", "revokeMySession", "End one of the caller's sessions", Agent, |b| {
            b.param("sessionId").and(b.member()).and(b.ctx()).and(b.meta()).then(members::revoke_session).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("sessionId", "The session's id, from the listing.", schema::<String>)
        .answers(200, "Ended", Json(schema::<super::Done>))
        .refuses(404, "The caller has no such session"),
        Route::new(get(), "/v1/projects/{projectId}/me/tokens", "listMyTokens", "The caller's personal API tokens, newest first", Agent, |b| {
            b.member().and(b.ctx()).then(tokens::list_mine).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("Never their secrets. Empty for the admin key, which is no member.")
        .answers(200, "The tokens", Json(schema::<tokens::TokenList>)),
        Route::new(post(), "/v1/projects/{projectId}/me/tokens", "createMyToken", "Make a personal API token", Agent, |b| {
            b.member().and(b.meta()).and(b.ctx()).and(b.json()).then(tokens::create).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("The answer carries the token's secret, `fpt_...`, this once: send it as `Authorization: Bearer`. It acts as the member, with their role as it is at each request; a `read` token is refused (403) on anything but GET and HEAD. It stops working when revoked or when its member is deactivated. Only a signed-in member makes tokens: not a token, not the admin key.")
        .body::<tokens::NewToken>(Limit::Standard)
        .answers(201, "The token and its secret", Json(schema::<tokens::CreatedToken>))
        .refuses(409, "The member holds 20 tokens already"),
        Route::new(delete(), "/v1/projects/{projectId}/me/tokens/{tokenId}", "revokeMyToken", "Revoke one of the caller's personal API tokens", Agent, |b| {
            b.param("tokenId").and(b.member()).and(b.meta()).and(b.ctx()).then(tokens::revoke_mine).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("tokenId", "The token's id, from the listing.", uuid)
        .answers(200, "Revoked", Json(schema::<super::Done>))
        .refuses(404, "The caller has no such token"),
        Route::new(get(), "/v1/projects/{projectId}/me/notifications", "getMyNotifications", "Which emails the caller receives", Agent, |b| {
            b.member().and(b.ctx()).then(notifications::get).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("The caller's email switches in this project: a new ticket (off until turned on), a ticket someone else assigned to them, a visitor's message on their ticket while they are away from the inbox (both on until turned off). The switches are the way to stop these emails, which carry no unsubscribe link. The admin key is no member (400).")
        .answers(200, "The caller's switches", Json(schema::<notifications::NotificationsView>))
        .refuses(400, "The admin key, which is no member"),
        Route::new(patch(), "/v1/projects/{projectId}/me/notifications", "updateMyNotifications", "Change which emails the caller receives", Agent, |b| {
            b.member().and(b.ctx()).and(b.json()).then(notifications::change).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("Switches left out stay as they are; at least one is given. Answers all of them.")
        .body::<notifications::NotificationsChange>(Limit::Standard)
        .answers(200, "The caller's switches", Json(schema::<notifications::NotificationsView>))
        .refuses(400, "No switch given, or the admin key, which is no member"),
        Route::new(get(), "/v1/projects/{projectId}/me/totp", "getMyTotp", "Whether the caller's two-factor authentication is on", Agent, |b| {
            b.member().and(b.ctx()).then(totp::get).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("Never the secret. Off for the admin key, which is no member.")
        .answers(200, "The caller's second factor", Json(schema::<totp::TotpView>)),
        Route::new(post(), "/v1/projects/{projectId}/me/totp", "enrolMyTotp", "Begin turning on two-factor authentication (TOTP)", Agent, |b| {
            b.member().and(b.ctx()).then(totp::enrol).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("A new secret (RFC 6238: SHA-1, six digits, 30 seconds) and its `otpauth://` URI, shown this once; it replaces an enrolment not confirmed yet. Nothing changes at sign-in until `confirmMyTotp`. Only a signed-in member: a token is refused (403), the admin key has no second factor (400).")
        .answers(201, "The secret, shown this once", Json(schema::<totp::TotpEnrolment>))
        .refuses(400, "The admin key, which is no member")
        .refuses(409, "Two-factor authentication is on already"),
        Route::new(post(), "/v1/projects/{projectId}/me/totp/confirm", "confirmMyTotp", "Turn on two-factor authentication with a first code", Agent, |b| {
            b.member().and(b.ctx()).and(b.meta()).and(b.json()).then(totp::confirm).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("A code from the app the secret was given to turns it on; from then on sign-in asks for a code. Answers ten recovery codes, shown this once, each good for one sign-in without the app.")
        .body::<totp::TotpCode>(Limit::Standard)
        .answers(200, "On; the recovery codes, shown this once", Json(schema::<totp::IssuedRecoveryCodes>))
        .refuses(409, "No enrolment waits, or two-factor authentication is on already"),
        Route::new(post(), "/v1/projects/{projectId}/me/totp/disable", "disableMyTotp", "Turn off two-factor authentication", Agent, |b| {
            b.member().and(b.ctx()).and(b.meta()).and(b.json()).then(totp::disable).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("With the member's password or a current code. Wrong ones count on the brake of sign-ins (429 with Retry-After).")
        .body::<totp::TotpProof>(Limit::Standard)
        .answers(200, "Off", Json(schema::<super::Done>))
        .refuses(403, "A wrong password or code, or a token")
        .refuses(409, "Two-factor authentication is off")
        .refuses(429, "Too many wrong passwords or codes lately (see Retry-After)"),
        Route::new(post(), "/v1/projects/{projectId}/me/totp/recovery-codes", "regenerateMyRecoveryCodes", "Make new recovery codes, voiding the old ones", Agent, |b| {
            b.member().and(b.ctx()).and(b.meta()).and(b.json()).then(totp::regenerate).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("With the member's password or a current code, as for turning it off.")
        .body::<totp::TotpProof>(Limit::Standard)
        .answers(200, "The new recovery codes, shown this once", Json(schema::<totp::IssuedRecoveryCodes>))
        .refuses(403, "A wrong password or code, or a token")
        .refuses(409, "Two-factor authentication is off")
        .refuses(429, "Too many wrong passwords or codes lately (see Retry-After)"),
        Route::new(get(), "/v1/projects/{projectId}/audit", "listAudit", "List the audit trail, newest first: who did what, when and from where", Admin, |b| {
            b.agent().and(b.ctx()).and(b.query()).then(audit::list).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .query::<audit::AuditListQuery>()
        .answers(200, "A page of records, and the cursor of the next", Json(schema::<audit::AuditList>))
        .refuses(400, "A filter, the limit or the cursor is not valid"),
        Route::new(get(), "/v1/projects/{projectId}/emails", "listEmails", "List the email outbox, newest first: what the server emails and what became of it", Admin, |b| {
            b.agent().and(b.ctx()).and(b.query()).then(emails::list).boxed()
        })
        .tag("email")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .query::<emails::EmailListQuery>()
        .describe("Each email the server owes or sent in the project (invitations, password resets, visitors' reply bursts, agents' ticket emails): its kind, recipient, subject, ticket, status, attempts and next attempt, why its last attempt failed (in general words and the SMTP code, never the server's own), and when it was made and sent. Never its body or links. `email_enabled` says whether this server sends email at all: without SMTP nothing is written here, and an email left from a time it did stays `pending`. An erased ticket's emails are erased with it. Emails are kept 30 days on ScyllaDB.")
        .answers(200, "A page of emails, and the cursor of the next", Json(schema::<emails::EmailList>))
        .refuses(400, "The ticket, the limit or the cursor is not valid"),
        Route::new(get(), "/v1/projects/{projectId}/export", "exportProject", "Export the project: tickets with their messages, notes, timelines and chats, the knowledge base and the settings, as JSON Lines", Admin, |b| {
            b.agent().and(b.ctx()).and(b.query()).then(export::export).boxed()
        })
        .tag("projects")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .query::<export::ExportQuery>()
        .answers(200, "One JSON object a line, streamed; the last line is `end` (see the API guide)", Other("application/jsonl"))
        .refuses(400, "The cursor is not the cursor of a resume line"),
        Route::new(get(), "/v1/projects/{projectId}/members", "listMembers", "List the project's members", Admin, |b| {
            b.agent().and(b.ctx()).then(members::list).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .answers(200, "The members, by name", Json(schema::<members::MemberList>)),
        Route::new(post(), "/v1/projects/{projectId}/members/{memberId}/password-reset", "resetMemberPassword", "Make a password-reset link for a member", Admin, |b| {
            b.param("memberId").and(b.member()).and(b.meta()).and(b.ctx()).then(members::reset_member).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("memberId", "The member's id.", uuid)
        .describe("A single-use link, expiring after `FLEETY_PASSWORD_RESET_TTL_SECS`, to hand to the member; it replaces their earlier one. The token is shown in this answer only. Admins make links for agents only; anyone for themself. When the server sends email, the link is also emailed to the member, and `emailed` is true.")
        .answers(201, "The link", Json(schema::<members::IssuedReset>))
        .refuses(404, "No such member")
        .refuses(409, "The member is deactivated"),
        Route::new(get(), "/v1/projects/{projectId}/invitations", "listInvitations", "The project's pending invitations", Admin, |b| {
            b.agent().and(b.ctx()).then(members::invitations).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .answers(200, "The invitations, newest first", Json(schema::<members::InvitationList>)),
        Route::new(post(), "/v1/projects/{projectId}/invitations", "inviteMember", "Invite someone by email", Admin, |b| {
            b.member().and(b.meta()).and(b.ctx()).and(b.json()).then(members::invite).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("A single-use link, expiring after `FLEETY_INVITATION_TTL_SECS`, that lets the invitee choose a name and password and join as an active member. The token is shown in this answer only. Inviting an address again replaces its earlier invitation. Admins invite agents only. When the server sends email (`email_enabled` in `getMe`), the link is also emailed to the invitee, and `emailed` is true.")
        .body::<members::NewInvitation>(Limit::Standard)
        .answers(201, "The invitation and its link", Json(schema::<members::IssuedInvitation>))
        .refuses(409, "The address is a member's already, or the project has as many pending invitations as it may"),
        Route::new(delete(), "/v1/projects/{projectId}/invitations/{invitationId}", "revokeInvitation", "Revoke a pending invitation", Admin, |b| {
            b.param("invitationId").and(b.member()).and(b.meta()).and(b.ctx()).then(members::revoke_invitation).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("invitationId", "The invitation's id, from the listing.", schema::<String>)
        .describe("Its link stops working (410). Admins revoke invitations to the agent role only.")
        .answers(200, "Revoked", Json(schema::<super::Done>))
        .refuses(404, "No such pending invitation"),
        Route::new(post(), "/v1/projects/{projectId}/join", "acceptInvitation", "Accept an invitation: choose a name and password, and sign in", SignIn, |b| {
            b.sign_in().and(b.ctx()).and(b.meta()).and(b.json()).then(members::accept_invitation).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("The invitee becomes an active member with the invitation's role and is signed in, as by `signIn`. A refused name or password leaves the link working.")
        .body::<members::AcceptInvitation>(Limit::Standard)
        .answers(200, "The new member and their session", Json(schema::<members::SignedInView>))
        .refuses(409, "The address became a member's meanwhile")
        .refuses(410, "The link was used, revoked or has expired"),
        Route::new(post(), "/v1/projects/{projectId}/password-reset", "requestPasswordReset", "Ask for a password reset", SignIn, |b| {
            b.sign_in().and(b.ctx()).and(b.meta()).and(b.json()).then(members::request_reset).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("Answered the same, at once, whether or not the address has an account. When the server sends email (`email_enabled` in `getMe`), the link is emailed to the member; when it does not, it is delivered to nobody: an owner or admin makes one with `resetMemberPassword` and hands it over.")
        .body::<members::ResetRequest>(Limit::Standard)
        .answers(202, "Taken", Json(schema::<super::Done>)),
        Route::new(post(), "/v1/projects/{projectId}/password-reset/complete", "completePasswordReset", "Set a new password with a reset link", SignIn, |b| {
            b.sign_in().and(b.ctx()).and(b.meta()).and(b.json()).then(members::complete_reset).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("Ends every session of the member, as a password change does: they sign in again.")
        .body::<members::CompleteReset>(Limit::Standard)
        .answers(200, "The password is changed", Json(schema::<super::Done>))
        .refuses(410, "The link was used or has expired"),
        Route::new(post(), "/v1/projects/{projectId}/members", "addMember", "Add a member, with a password", Admin, |b| {
            b.member().and(b.ctx()).and(b.meta()).and(b.json()).then(members::add).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("The member is `invited` until their first sign-in. Admins add agents only.")
        .body::<members::AddMember>(Limit::Standard)
        .answers(201, "The new member", Json(schema::<members::MemberView>))
        .refuses(409, "The project has a member with this email")
        .link("GetMember", "getMember", &[TICKET, ("memberId", CREATED_ID)])
        .link("UpdateMember", "updateMember", &[TICKET, ("memberId", CREATED_ID)]),
        Route::new(get(), "/v1/projects/{projectId}/members/{memberId}", "getMember", "Read a member", Admin, |b| {
            b.param("memberId").and(b.agent()).and(b.ctx()).then(members::get).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("memberId", "The member's id.", uuid)
        .answers(200, "The member", Json(schema::<members::MemberView>))
        .refuses(404, "No such member"),
        Route::new(patch(), "/v1/projects/{projectId}/members/{memberId}", "updateMember", "Change a member's name, avatar, role, state or password", Admin, |b| {
            b.param("memberId").and(b.member()).and(b.ctx()).and(b.meta()).and(b.json()).then(members::update).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("memberId", "The member's id.", uuid)
        .describe("Members are never removed, so what they did keeps a name: `state: deactivated` deactivates one. Deactivating a member or giving them a new password ends every session of theirs. Only owners change owners and admins, or give those roles; nobody changes their own role or state.")
        .body::<members::ChangeMember>(Limit::Standard)
        .answers(200, "The member after the change", Json(schema::<members::MemberView>))
        .refuses(404, "No such member"),
        Route::new(get(), "/v1/projects/{projectId}/members/{memberId}/tokens", "listMemberTokens", "A member's personal API tokens, newest first", Admin, |b| {
            b.param("memberId").and(b.member()).and(b.ctx()).then(tokens::list_members).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("memberId", "The member's id.", uuid)
        .describe("Never their secrets. Admins see agents' tokens only.")
        .answers(200, "The tokens", Json(schema::<tokens::TokenList>))
        .refuses(404, "No such member"),
        Route::new(delete(), "/v1/projects/{projectId}/members/{memberId}/tokens/{tokenId}", "revokeMemberToken", "Revoke a member's personal API token", Admin, |b| {
            b.param("memberId").and(b.param("tokenId")).and(b.member()).and(b.meta()).and(b.ctx()).then(tokens::revoke_members).boxed()
        })
        .tag("members")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("memberId", "The member's id.", uuid)
        .param("tokenId", "The token's id.", uuid)
        .describe("Admins revoke agents' tokens only.")
        .answers(200, "Revoked", Json(schema::<super::Done>))
        .refuses(404, "No such member, or the member has no such token"),
        Route::new(get(), "/v1/projects/{projectId}/canned-replies", "listCannedReplies", "List the project's canned replies", Agent, |b| {
            b.agent().and(b.ctx()).then(canned::list).boxed()
        })
        .tag("canned replies")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .answers(200, "The replies, by shortcut", Json(schema::<canned::CannedReplyList>)),
        Route::new(post(), "/v1/projects/{projectId}/canned-replies", "createCannedReply", "Save a canned reply", Admin, |b| {
            b.audited().and(b.ctx()).and(b.json()).then(canned::create).boxed()
        })
        .tag("canned replies")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("A name, a shortcut the inbox picks it by after `/`, and a body whose `{{visitor.name}}` and `{{agent.name}}` the inbox fills in. A project has at most 200.")
        .body::<canned::NewCannedReply>(Limit::Standard)
        .answers(201, "The reply", Json(schema::<canned::CannedReplyView>))
        .refuses(409, "The project has as many canned replies as it may, or another has this shortcut")
        .link("GetCannedReply", "getCannedReply", &[TICKET, ("replyId", CREATED_ID)])
        .link("UpdateCannedReply", "updateCannedReply", &[TICKET, ("replyId", CREATED_ID)])
        .link("DeleteCannedReply", "deleteCannedReply", &[TICKET, ("replyId", CREATED_ID)]),
        Route::new(get(), "/v1/projects/{projectId}/canned-replies/{replyId}", "getCannedReply", "Read a canned reply", Agent, |b| {
            b.param("replyId").and(b.agent()).and(b.ctx()).then(canned::get).boxed()
        })
        .tag("canned replies")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("replyId", "The reply's id.", uuid)
        .answers(200, "The reply", Json(schema::<canned::CannedReplyView>))
        .refuses(404, "No such canned reply"),
        Route::new(patch(), "/v1/projects/{projectId}/canned-replies/{replyId}", "updateCannedReply", "Change a canned reply's name, shortcut or body", Admin, |b| {
            b.param("replyId").and(b.audited()).and(b.ctx()).and(b.json()).then(canned::update).boxed()
        })
        .tag("canned replies")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("replyId", "The reply's id.", uuid)
        .body::<canned::CannedReplyChange>(Limit::Standard)
        .answers(200, "The reply after the change", Json(schema::<canned::CannedReplyView>))
        .refuses(404, "No such canned reply")
        .refuses(409, "Another canned reply has this shortcut"),
        Route::new(delete(), "/v1/projects/{projectId}/canned-replies/{replyId}", "deleteCannedReply", "Delete a canned reply", Admin, |b| {
            b.param("replyId").and(b.audited()).and(b.ctx()).then(canned::delete).boxed()
        })
        .tag("canned replies")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("replyId", "The reply's id.", uuid)
        .answers(200, "Deleted", Json(schema::<super::Done>))
        .refuses(404, "No such canned reply"),
        // Known visitors: agents read contacts, owners and admins keep the identity secrets.
        Route::new(get(), "/v1/projects/{projectId}/contacts", "listContacts", "List or search the project's contacts", Agent, |b| {
            b.agent().and(b.ctx()).and(b.query()).then(contacts::list).boxed()
        })
        .tag("contacts")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .query::<contacts::ContactsQuery>()
        .answers(200, "A page of contacts, and the cursor of the next", Json(schema::<contacts::ContactList>)),
        Route::new(get(), "/v1/projects/{projectId}/contacts/{contactId}", "getContact", "Read a contact, with their tickets", Agent, |b| {
            b.param("contactId").and(b.agent()).and(b.ctx()).then(contacts::get).boxed()
        })
        .tag("contacts")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("contactId", "The contact's id.", uuid)
        .answers(200, "The contact and their newest tickets", Json(schema::<contacts::ContactDetail>))
        .refuses(404, "No such contact"),
        Route::new(get(), "/v1/projects/{projectId}/contacts/{contactId}/export", "exportContact", "Export one contact's data: the contact and every ticket they opened, as JSON Lines", Admin, |b| {
            b.param("contactId").and(b.agent()).and(b.ctx()).then(export::export_contact).boxed()
        })
        .tag("contacts")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("contactId", "The contact's id.", uuid)
        .describe("For a person's request to see their data: the contact, then each ticket they opened with its messages, internal notes, timeline and assistant chat, as in `exportProject`, as of the request's start. The last line is `end`, with `more_tickets` true when the contact has more than 10,000 tickets and only the newest were exported.")
        .answers(200, "One JSON object a line, streamed; the last line is `end`", Other("application/jsonl"))
        .refuses(404, "No such contact"),
        Route::new(delete(), "/v1/projects/{projectId}/contacts/{contactId}", "eraseContact", "Erase a contact and every ticket they opened", Admin, |b| {
            b.param("contactId").and(b.audited()).and(b.ctx()).then(contacts::erase).boxed()
        })
        .tag("contacts")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("contactId", "The contact's id.", uuid)
        .describe("Erases every ticket the contact opened, each as `DELETE /v1/projects/{projectId}/tickets/{slug}` erases one (messages, notes, timeline, the assistant transcript of the chat that opened it, search index entries, webhook deliveries; its sockets get `ticket_deleted`), then the contact's record (external id, name, email, attributes). A chat with the assistant that opened no ticket is not linked to the contact and is not erased. On the embedded store the words are gone from the data directory's files when this answers. Recorded in the audit trail as `contact.erased` by the contact's id, with the number of tickets erased. A server stopped halfway finishes the erasure on start. A second DELETE answers 404; a contact whose customer backend vouches for them again later is a new record.")
        .answers(200, "Erased", Json(schema::<super::Done>))
        .refuses(404, "No such contact (or it was erased already)"),
        Route::new(get(), "/v1/projects/{projectId}/identity-secrets", "listIdentitySecrets", "List the project's identity secrets (never the secrets themselves)", Admin, |b| {
            b.agent().then(contacts::list_secrets).boxed()
        })
        .tag("contacts")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .answers(200, "The secrets' ids, oldest first", Json(schema::<contacts::IdentitySecretList>)),
        Route::new(post(), "/v1/projects/{projectId}/identity-secrets", "createIdentitySecret", "Create an identity secret", Admin, |b| {
            b.audited().and(b.ctx()).then(contacts::create_secret).boxed()
        })
        .tag("contacts")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("The HMAC key with which the customer's backend vouches for its users (a user hash, or an HS256 token), shown this once. Every secret the project holds verifies: to rotate, create a new one, move the backend to it, then delete the old one. A project holds at most 3.")
        .answers(201, "The secret, shown this once", Json(schema::<contacts::CreatedIdentitySecret>))
        .refuses(409, "The project holds as many identity secrets as it may")
        .link("DeleteIdentitySecret", "deleteIdentitySecret", &[TICKET, ("secretId", CREATED_ID)]),
        Route::new(delete(), "/v1/projects/{projectId}/identity-secrets/{secretId}", "deleteIdentitySecret", "Remove an identity secret", Admin, |b| {
            b.param("secretId").and(b.audited()).and(b.ctx()).then(contacts::delete_secret).boxed()
        })
        .tag("contacts")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .param("secretId", "The secret's id.", schema::<String>)
        .describe("Identities vouched for with it no longer verify (on other server nodes within 30 seconds); sessions already started keep their contact until they end.")
        .answers(200, "Removed", Json(schema::<super::Done>))
        .refuses(404, "No such identity secret"),
        // The mail server, handing over replies by email.
        Route::new(post(), "/v1/inbound/email", "receiveEmail", "Post a reply by email on its ticket", MailServer, |b| {
            b.mail_server().and(b.ctx()).and(b.meta()).and(b.mail()).then(inbound::receive).boxed()
        })
        .tag("email")
        .describe("The raw RFC 5322 message, as a mail server pipes it or a provider forwards it, sent to a ticket's reply address (`reply+TOKEN@FLEETY_REPLY_DOMAIN`, found in Delivered-To, X-Original-To, To or Cc). The text part (or the HTML part as text) without the quoted history and the signature is posted as the visitor's message, or as the agent's when From is the address of one of the project's members. The same mail (by Message-ID) delivered again posts nothing and is answered 200.")
        .mail_body()
        .answers(201, "The reply was posted", Json(schema::<inbound::ReplyReceived>))
        .answers(200, "This mail was posted before; nothing new was posted", Json(schema::<inbound::ReplyReceived>))
        .refuses(404, "No reply address of this server among the recipients, a forged or altered token, or a ticket that no longer exists")
        .refuses(409, "The ticket is closed")
        .refuses(422, "The email has no text part, no text of its own once the quoted history and signature are left out, or more than a message may hold"),
        // The operator.
        Route::new(post(), "/v1/admin/projects", "createProject", "Create a project", Operator, |b| {
            b.operator().and(b.ctx()).and(b.json()).then(projects_api::create).boxed()
        })
        .tag("operators")
        .body::<projects_api::CreateProject>(Limit::Standard)
        .answers(201, "The project and its admin key, shown this once", Json(schema::<projects_api::CreatedProjectView>))
        .refuses(409, "A project with this id exists"),
        Route::new(get(), "/v1/admin/projects/{projectId}/members", "operatorListMembers", "List a project's members", Operator, |b| {
            b.param("projectId").and(b.operator()).and(b.ctx()).then(members::operator_list).boxed()
        })
        .tag("operators")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .answers(200, "The members, by name", Json(schema::<members::MemberList>))
        .refuses(404, "No such project"),
        Route::new(post(), "/v1/admin/projects/{projectId}/members", "operatorAddMember", "Add a member of any role to a project", Operator, |b| {
            b.param("projectId").and(b.operator()).and(b.ctx()).and(b.meta()).and(b.json()).then(members::operator_add).boxed()
        })
        .tag("operators")
        .param("projectId", PROJECT, schema::<ProjectId>)
        .describe("How a project gets its first owner besides its admin key.")
        .body::<members::AddMember>(Limit::Standard)
        .answers(201, "The new member", Json(schema::<members::MemberView>))
        .refuses(404, "No such project")
        .refuses(409, "The project has a member with this email"),
        // The server itself.
        Route::new(get(), "/v1/openapi.json", "openapi", "This API's description (OpenAPI 3.1)", Anyone, |_| {
            warp::any().map(openapi::document_response).boxed()
        })
        .tag("server")
        .answers(200, "The OpenAPI document", Json(object)),
        // The links of a visitor's email: the signed token is the credential.
        Route::new(get(), "/v1/email/conversation", "openEmailConversation", "Open a ticket's conversation from a visitor's email", Anyone, |b| {
            b.ctx().and(b.query()).then(visitor_email::conversation).boxed()
        })
        .tag("email")
        .describe("The link of an email sent to a visitor after agents replied: with a valid, unexpired token (7 days), a page that loads the project's widget on that ticket's conversation.")
        .query::<visitor_email::TokenQuery>()
        .answers(200, "The page", Other("text/html; charset=utf-8"))
        .refuses(400, "No token")
        .refuses(401, "The token is forged or expired")
        .refuses(404, "The ticket no longer exists"),
        Route::new(get(), "/v1/email/unsubscribe", "unsubscribeEmailPage", "Confirm unsubscribing from a ticket's emails", Anyone, |b| {
            let language = warp::header::optional::<String>("accept-language");
            b.ctx().and(language).and(b.query()).then(visitor_email::unsubscribe_page).boxed()
        })
        .tag("email")
        .describe("A page with one button that unsubscribes (a POST), in the language of the browser's `Accept-Language` among those the emails speak (English otherwise): following the link alone changes nothing, so mail scanners unsubscribe nobody.")
        .query::<visitor_email::TokenQuery>()
        .answers(200, "The page", Other("text/html; charset=utf-8"))
        .refuses(400, "No token")
        .refuses(401, "The token is forged or expired"),
        Route::new(post(), "/v1/email/unsubscribe", "unsubscribeEmail", "Unsubscribe from a ticket's emails (one click, RFC 8058)", Anyone, |b| {
            b.ctx().and(b.query()).then(visitor_email::unsubscribe).boxed()
        })
        .tag("email")
        .describe("The `List-Unsubscribe` address of a visitor's email, which mail clients POST `List-Unsubscribe=One-Click` to (the body is not needed). The visitor gets no more email about that ticket.")
        .query::<visitor_email::TokenQuery>()
        .answers(200, "Unsubscribed", Json(schema::<super::Done>))
        .refuses(400, "No token")
        .refuses(401, "The token is forged or expired")
        .refuses(404, "This server sends no email"),
        Route::new(get(), "/healthz", "health", "Liveness", Anyone, |_| {
            warp::any().map(super::health).boxed()
        })
        .tag("server")
        .answers(200, "The server is up", Json(schema::<super::Health>)),
        Route::new(get(), "/metrics", "metrics", "Metrics in the Prometheus text format", Anyone, |b| {
            b.ctx().then(super::metrics_route).boxed()
        })
        .tag("server")
        .describe("Served here only when `FLEETY_METRICS_LISTEN` gives no address of its own; then 404.")
        .answers(200, "The metrics", Other("text/plain; version=0.0.4"))
        .refuses(404, "Metrics are served on their own address"),
        Route::new(get(), "/widget.js", "widgetLoader", "The embeddable widget's loader script", Anyone, |b| {
            b.query().and(assets::request()).map(|_: assets::VersionQuery, r| assets::LOADER.answer_to(&r)).boxed()
        })
        .tag("web")
        .query::<assets::VersionQuery>()
        .answers(200, "The script", Other("text/javascript"))
        .answers(304, "Not modified since the ETag the client holds", Nothing),
        Route::new(get(), "/widget/ui.js", "widgetUi", "The widget's interface, loaded by the loader", Anyone, |b| {
            b.query().and(assets::request()).map(|q: assets::VersionQuery, r| assets::WIDGET_UI.answer_versioned(&r, q.v.as_deref())).boxed()
        })
        .tag("web")
        .query::<assets::VersionQuery>()
        .answers(200, "The script", Other("text/javascript"))
        .answers(304, "Not modified since the ETag the client holds", Nothing),
        Route::new(get(), "/", "home", "The home page: the demo, or where the inbox and this reference are", Anyone, |b| {
            let host = warp::header::optional::<String>("host").or(warp::any().map(|| None)).unify();
            b.ctx().and(host).map(super::home::page).boxed()
        })
        .tag("web")
        .describe("With the demo on (`FLEETY_DEMO`), a sample customer site with the widget embedded, a link to the inbox and the next steps; otherwise a short page naming the inbox and the API reference. Never an admin key.")
        .answers(200, "The page", Other("text/html; charset=utf-8")),
        Route::new(get(), "/inbox", "inboxPage", "The agents' inbox", Anyone, |b| {
            b.query().and(assets::request()).map(|_: assets::VersionQuery, r| assets::INBOX_PAGE.answer_to(&r)).boxed()
        })
        .tag("web")
        .query::<assets::VersionQuery>()
        .answers(200, "The page", Other("text/html; charset=utf-8"))
        .answers(304, "Not modified since the ETag the client holds", Nothing),
        Route::new(get(), "/inbox/app.js", "inboxApp", "The inbox's script", Anyone, |b| {
            b.query().and(assets::request()).map(|_: assets::VersionQuery, r| assets::INBOX_JS.answer_to(&r)).boxed()
        })
        .tag("web")
        .query::<assets::VersionQuery>()
        .answers(200, "The script", Other("text/javascript"))
        .answers(304, "Not modified since the ETag the client holds", Nothing),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::route::Access::{self, *};
    use super::table;

    /// Who may call each route, decided here once more: a route added to the table without a
    /// line here fails, so none is left out of the role decision by accident.
    const WHO: &[(&str, Access)] = &[
        ("initSession", SessionLimit),
        ("describeSession", Session),
        ("renewSession", CountedSession),
        ("listSessionTickets", Session),
        ("createTicket", Public),
        ("getTicket", Public),
        ("changeTicket", Agent),
        ("postMessage", Public),
        ("markRead", Public),
        ("rateTicket", Public),
        ("setVisitorEmail", Public),
        ("ticketSocket", Public),
        ("searchHelpCenter", Public),
        ("readHelpCenterArticle", Public),
        ("chat", Session),
        ("chatWithTools", Session),
        ("rateAnswer", CountedSession),
        ("getProject", Agent),
        // The project's settings and origins.
        ("updateProject", Admin),
        ("listTickets", Agent),
        ("listAssignees", Agent),
        ("feedToken", Agent),
        ("projectFeed", Feed),
        ("ticketChat", Agent),
        ("listNotes", Agent),
        ("addNote", Agent),
        ("listTimeline", Agent),
        // The knowledge base: agents read it, admins write it.
        ("listArticles", Agent),
        ("createArticle", Admin),
        ("getArticle", Agent),
        ("updateArticle", Admin),
        ("deleteArticle", Admin),
        ("eraseTicket", Admin),
        ("searchArticles", Agent),
        ("listUnansweredQuestions", Agent),
        ("dismissUnansweredQuestion", Admin),
        ("assistantOutcomes", Agent),
        // Webhooks carry every ticket's content to another system: admins only.
        ("listWebhooks", Admin),
        ("createWebhook", Admin),
        ("getWebhook", Admin),
        ("updateWebhook", Admin),
        ("deleteWebhook", Admin),
        ("webhookDeliveries", Admin),
        ("replayDelivery", Admin),
        ("signIn", SignIn),
        ("signOut", Agent),
        ("getMe", Agent),
        ("listMySessions", Agent),
        ("revokeMySession", Agent),
        // Personal API tokens: each member their own; owners and admins those of whom they
        // manage.
        ("listMyTokens", Agent),
        ("createMyToken", Agent),
        ("revokeMyToken", Agent),
        // Email switches: each member their own.
        ("getMyNotifications", Agent),
        ("updateMyNotifications", Agent),
        // The second factor: each member their own, from a signed-in session.
        ("getMyTotp", Agent),
        ("enrolMyTotp", Agent),
        ("confirmMyTotp", Agent),
        ("disableMyTotp", Agent),
        ("regenerateMyRecoveryCodes", Agent),
        ("signInSecondFactor", SignIn),
        ("listAudit", Admin),
        // The outbox names every recipient and subject of the project: admins only.
        ("listEmails", Admin),
        ("exportProject", Admin),
        ("exportContact", Admin),
        ("listMembers", Admin),
        ("addMember", Admin),
        ("getMember", Admin),
        ("updateMember", Admin),
        ("listMemberTokens", Admin),
        ("revokeMemberToken", Admin),
        // Canned replies: every agent inserts them, admins keep them.
        ("listCannedReplies", Agent),
        ("createCannedReply", Admin),
        ("getCannedReply", Agent),
        ("updateCannedReply", Admin),
        ("deleteCannedReply", Admin),
        // Known visitors: every agent reads contacts; the identity secrets vouch for users,
        // so only those who keep the project's settings see or change them.
        ("listContacts", Agent),
        ("getContact", Agent),
        ("eraseContact", Admin),
        ("listIdentitySecrets", Admin),
        ("createIdentitySecret", Admin),
        ("deleteIdentitySecret", Admin),
        // The mail server posts replies by email with its own secret; the reply address's
        // signed token names the ticket.
        ("receiveEmail", MailServer),
        ("createProject", Operator),
        ("operatorListMembers", Operator),
        ("operatorAddMember", Operator),
        ("home", Anyone),
        ("openEmailConversation", Anyone),
        ("unsubscribeEmailPage", Anyone),
        ("unsubscribeEmail", Anyone),
        ("openapi", Anyone),
        ("health", Anyone),
        ("metrics", Anyone),
        ("widgetLoader", Anyone),
        ("widgetUi", Anyone),
        ("inboxPage", Anyone),
        ("inboxApp", Anyone),
        // Invitations and resets follow the members' rules; using a link needs only the link.
        ("resetMemberPassword", Admin),
        ("listInvitations", Admin),
        ("inviteMember", Admin),
        ("revokeInvitation", Admin),
        ("acceptInvitation", SignIn),
        ("requestPasswordReset", SignIn),
        ("completePasswordReset", SignIn),
    ];

    #[test]
    fn every_route_has_its_role_decided_here() {
        for route in table() {
            let decided = WHO.iter().find(|(id, _)| *id == route.id);
            let Some((_, access)) = decided else {
                panic!(
                    "{} {} ({}) is not in the role table: decide who may call it",
                    route.method, route.path, route.id
                );
            };
            assert_eq!(
                route.access, *access,
                "{} {} ({})",
                route.method, route.path, route.id
            );
        }
        for (id, _) in WHO {
            assert!(
                table().iter().any(|r| r.id == *id),
                "{id} is in the role table but not a route"
            );
        }
    }

    #[test]
    fn every_route_under_a_project_but_the_public_ones_and_sign_in_needs_a_role() {
        for route in table() {
            let project_route = route.path.starts_with("/v1/projects/{projectId}");
            let role = super::super::access::least_role(route.access);
            if project_route && !matches!(route.access, Feed | SignIn) {
                assert!(role.is_some(), "{} {}", route.method, route.path);
            }
        }
    }
}

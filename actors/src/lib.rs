//! Fleety's core: the support domain, its actors, and the ports they use (storage, clock).
//!
//! This crate knows nothing of HTTP, CQL or any LLM client; the `fleety` crate plugs adapters
//! into the ports and puts a web front on the actors.
//!
//! The supervision tree ([`root::System::start`] builds it):
//!
//! ```text
//! RootSupervisor                 stops the actor system if a keeper fails
//!  ├── Keeper "ticket"           forgets tickets that stop; restarts failed ones from the store
//!  │    └── TicketActor          one per active ticket: its state, its subscribers, its only
//!  │                             writer; activated on demand, passivated when idle
//!  ├── Keeper "knowledge_base"   forgets actors that stop or fail; the next request starts one
//!  │    └── KnowledgeBaseActor   one per project in use: its articles and their search index
//!  └── Keeper "chat_session"     the same
//!       └── ChatSessionActor     one per anonymous session: transcript, quotas, model streams
//! ```
//!
//! Each `Keeper` is the one generic supervisor of [`registry`] (`Keeper<TicketKey, TicketMsg>`
//! and so on), started per family with its [`registry::Registry`], which routes each key to
//! its running actor. The tickers that drive idle checks and the tasks that do an actor's slow
//! work are tokio tasks, not actors.

#![forbid(unsafe_code)]

pub mod agent_mail;
pub mod analysis;
pub mod audit;
pub mod canned;
pub mod chat;
pub mod clock;
pub mod contact;
pub mod contact_erasure;
pub mod domain;
pub mod email;
pub mod events;
pub mod feed;
pub mod handoff;
pub mod inbound_mail;
pub mod kb;
pub mod llm;
pub mod member;
pub mod message_id;
pub mod registry;
pub mod root;
pub mod schema;
pub mod search;
pub mod slug;
pub mod store;
pub mod telemetry;
#[cfg(test)]
mod testkit;
pub mod ticket;
pub mod unanswered;
pub mod visitor_mail;
pub mod webhook;

pub use message_id::MessageId;

/// A concurrent map hashed with foldhash instead of SipHash. The maps of this type are looked
/// up on every request (live tickets, cached views, projects, feeds), where SipHash showed in
/// the profile. foldhash seeds itself per process but claims only minimal resistance to
/// collisions crafted on purpose, so these maps hold only keys that name things which exist:
/// a ticket key a client made up stays in `live` just until its lookup fails.
pub type FastMap<K, V> = dashmap::DashMap<K, V, foldhash::fast::RandomState>;

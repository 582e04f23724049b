//! Fleety's core: the support domain, its actors, and the ports they use (storage, clock).
//!
//! This crate knows nothing of HTTP, CQL or any LLM client; the `fleety` crate plugs adapters
//! into the ports and puts a web front on the actors.
//!
//! The supervision tree:
//!
//! ```text
//! RootSupervisor
//!  ├── TicketSupervisor      restarts failed tickets from the store; keeps the registry true
//!  │    └── TicketActor      one per active ticket: its state, its subscribers, its only writer;
//!  │                         activated on demand, passivated when idle
//!  ├── KbSupervisor
//!  │    └── KnowledgeBaseActor   one per project in use: its articles and their search index
//!  └── ChatSupervisor
//!       └── ChatSessionActor     one per anonymous session: transcript, quotas, model streams
//! ```

#![forbid(unsafe_code)]

pub mod chat;
pub mod clock;
pub mod domain;
pub mod events;
pub mod feed;
pub mod kb;
pub mod llm;
pub mod message_id;
pub mod registry;
pub mod root;
pub mod schema;
pub mod slug;
pub mod store;
pub mod telemetry;
#[cfg(test)]
mod testkit;
pub mod ticket;
pub mod webhook;

pub use message_id::MessageId;

/// A concurrent map hashed with foldhash instead of SipHash. The maps of this type are looked
/// up on every request (live tickets, cached views, projects, feeds), where SipHash showed in
/// the profile. foldhash seeds itself per process but claims only minimal resistance to
/// collisions crafted on purpose, so these maps hold only keys that name things which exist:
/// a ticket key a client made up stays in `live` just until its lookup fails.
pub type FastMap<K, V> = dashmap::DashMap<K, V, foldhash::fast::RandomState>;

//! API tests: each starts a real server on port 0 and drives it over real sockets.

#[path = "../support_cql.rs"]
mod support_cql;

mod agent;
mod assignment;
mod assistant;
mod audit;
mod canned;
mod chat;
mod chat_llm;
mod cli;
mod crash_email;
mod crash_erasure;
mod email;
mod erasure;
mod export;
mod fake_llm;
mod feedback;
mod guidance;
mod helpers;
mod home;
mod identity;
mod inbound_email;
mod invitations;
mod kb;
mod limits_and_cors;
mod llm_e2e;
mod members;
mod metrics;
mod openapi;
mod persistence;
mod real_server;
mod realtime;
mod satisfaction;
mod search;
mod security;
mod server;
mod session;
mod tags;
mod ticket_access;
mod tickets;
mod tokens;
mod totp;
mod visitor_email;
mod webhooks;

//! Fleety server: the adapters around the actor core in `fleety-actors`: the warp HTTP,
//! WebSocket and SSE front, the storage backends, authentication, configuration, telemetry
//! and the command line.

#![forbid(unsafe_code)]

pub mod accounts;
pub mod agent_mail;
pub mod api_tokens;
pub mod app;
pub mod auth;
pub mod chat_client;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod export_client;
pub mod http;
pub mod identity;
pub mod inbound_mail;
pub mod links;
pub mod llm;
pub mod mailer;
pub mod members;
pub mod metrics;
pub mod projects;
pub mod reply_address;
pub mod retention;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod totp;
pub mod visitor_mail;
pub mod webhooks;

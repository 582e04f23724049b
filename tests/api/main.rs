//! API tests: each starts a real server on port 0 and drives it over real sockets.

#[path = "../support_cql.rs"]
mod support_cql;

mod agent;
mod cli;
mod helpers;
mod limits_and_cors;
mod openapi;
mod persistence;
mod realtime;
mod server;
mod session;
mod tickets;

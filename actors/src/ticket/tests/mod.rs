//! The ticket actor's tests, on a whole actor system over the in-memory store:
//!
//! - `pipeline.rs`: the write pipeline, driven through the store's gate: a test holds each
//!   batch the actor submits and decides when it lands, fails, or is lost;
//! - `behaviour.rs`: the actor as its callers see it;
//! - `versions.rs`: changes of the ticket's own fields, their versions and batches;
//! - `several_nodes.rs`: one node of several, on a fake cluster.

mod behaviour;
mod pipeline;
mod several_nodes;
mod versions;

use ractor::RpcReplyPort;
use tokio::sync::oneshot;

use super::*;
use crate::domain::{IdempotencyKey, Message, MessageBody, Participant, Ticket};
use crate::store::{MessageRange, TicketStore};
use crate::testkit::{kit, Kit};

/// Posts a message through [`Tickets::run`], as the HTTP side does.
async fn post_message(
    tickets: &Tickets,
    key: &TicketKey,
    author: Participant,
    content: MessageBody,
    idempotency_key: Option<IdempotencyKey>,
) -> Result<Message, TicketError> {
    let post = Command::Post {
        author,
        content,
        idempotency_key,
        agent: None,
    };
    tickets.run(key, post).await?.into_message()
}

/// Changes the ticket's own fields through [`Tickets::run`], as the HTTP side does.
async fn change(
    tickets: &Tickets,
    key: &TicketKey,
    change: TicketChange,
) -> Result<Ticket, TicketError> {
    tickets
        .run(key, Command::Change(change))
        .await?
        .into_ticket()
}

struct Fixture {
    kit: Kit,
    tickets: Tickets,
    key: TicketKey,
}

/// A ticket whose batches wait at the store's gate.
async fn fixture() -> Fixture {
    let kit = kit().await;
    let key = kit.open_ticket().await;
    kit.store.hold_batches();
    let tickets = kit.system.tickets.clone();
    Fixture { kit, tickets, key }
}

type Posted = oneshot::Receiver<Result<Message, TicketError>>;

/// Puts a post in the actor's mailbox and returns where its answer will come (closed, with no
/// answer, if the actor drops the request).
async fn post(f: &Fixture, text: &str) -> Posted {
    let (tx, rx) = oneshot::channel();
    let actor = f.tickets.actor(&f.key).await.unwrap();
    let cmd = Command::Post {
        author: Participant::User,
        content: MessageBody::parse(text).unwrap(),
        idempotency_key: None,
        agent: None,
    };
    let reply = RpcReplyPort::from(tx);
    actor
        .send_message(TicketMsg::Run {
            cmd,
            by: None,
            reply,
        })
        .unwrap();
    let (message, posted) = oneshot::channel();
    tokio::spawn(async move {
        if let Ok(answer) = rx.await {
            let _ = message.send(answer.and_then(Answer::into_message));
        }
    });
    posted
}

/// Calls the ticket through `Tickets::call`, as the HTTP side does, from a task of its own.
fn spawn_call<T: Send + 'static>(
    f: &Fixture,
    make: impl Fn(RpcReplyPort<Result<T, TicketError>>) -> TicketMsg + Send + Sync + 'static,
) -> tokio::task::JoinHandle<Result<T, TicketError>> {
    let (tickets, key) = (f.tickets.clone(), f.key.clone());
    tokio::spawn(async move { tickets.call(&key, make).await })
}

/// Returns once the actor has handled everything put in its mailbox before.
async fn settled_mailbox(f: &Fixture) {
    f.tickets
        .call(&f.key, |reply| TicketMsg::Get { page: None, reply })
        .await
        .unwrap();
}

/// Posts "one", which the gate holds in flight, and "two", which the actor queues behind it.
async fn one_held_one_queued(f: &Fixture) -> (Posted, Posted) {
    let first = post(f, "one").await;
    f.kit.store.holding(1).await;
    let second = post(f, "two").await;
    settled_mailbox(f).await;
    (first, second)
}

async fn stored(f: &Fixture) -> Vec<String> {
    f.kit
        .store
        .list_messages(&f.key.project, &f.key.slug, MessageRange::all())
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.content.as_str().to_owned())
        .collect()
}

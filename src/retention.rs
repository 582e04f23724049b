//! Retention (issue 29): the server erasing, by itself, the tickets a project's setting says it
//! keeps no longer. This module owns when that runs, which tickets it picks, and how little it
//! does at a time; the erasure itself is the one `DELETE …/tickets/{slug}` uses
//! ([`fleety_actors::ticket::Tickets::erase`]), so it reaches every place a ticket's words are.
//!
//! - Every `FLEETY_RETENTION_EVERY_SECS`, each project with `retention.tickets_after_days`
//!   has its resolved and closed tickets looked through, a bounded number of pages per round.
//!   A ticket whose last change is older than the setting (on the server's clock) is erased.
//! - At most [`BATCH`] tickets are erased per round over all projects, one at a time, so live
//!   traffic keeps its share of the store; a project with more waits for the next rounds.
//!   Where a round stopped reading a project's listing is kept, so the next round goes on
//!   from there rather than reading the same pages again.
//! - Each erasure is audited as `ticket.deleted` by `retention`, named by the slug only.
//! - With several nodes retention does not run: ticket erasure reaches this node's actors
//!   only, like `DELETE …/tickets/{slug}` (see docs/operations.md).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use fleety_actors::audit::{AuditActor, AuditBy, AuditTarget};
use fleety_actors::clock::Clock;
use fleety_actors::domain::{Project, ProjectId, Ticket, TicketStatus};
use fleety_actors::store::{Store, TicketCursor, TicketQuery};
use fleety_actors::ticket::{TicketKey, Tickets};
use tokio_util::sync::CancellationToken;

/// Tickets erased per round, over all projects.
pub const BATCH: usize = 25;
/// Listing pages read per project and status per round.
const PAGES: usize = 20;
/// Tickets per listing page.
const PAGE: usize = 100;

/// Whether a ticket is past its project's retention at `now`.
pub fn expired(ticket: &Ticket, days: u32, now: DateTime<Utc>) -> bool {
    matches!(ticket.status, TicketStatus::Resolved | TicketStatus::Closed)
        && ticket.updated_at + TimeDelta::days(i64::from(days)) <= now
}

/// Applies the projects' retention settings.
pub struct Retention {
    store: Arc<dyn Store>,
    tickets: Tickets,
    clock: Arc<dyn Clock>,
    every: Duration,
    /// Where the last round stopped in a project's listing of a status.
    resume: HashMap<(ProjectId, TicketStatus), TicketCursor>,
    /// Rounds so far: each starts with the next project, so one project with a long backlog
    /// does not keep the others waiting.
    turn: usize,
}

impl Retention {
    pub fn new(
        store: Arc<dyn Store>,
        tickets: Tickets,
        clock: Arc<dyn Clock>,
        every: Duration,
    ) -> Self {
        Self {
            store,
            tickets,
            clock,
            every,
            resume: HashMap::new(),
            turn: 0,
        }
    }

    /// Runs a round every `every` until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let erased = self.round().await;
            metrics::counter!("fleety_retention_rounds_total").increment(1);
            if erased > 0 {
                tracing::info!(erased, "retention erased tickets");
            }
        }
    }

    /// One round: how many tickets it erased.
    pub async fn round(&mut self) -> usize {
        let mut projects = match self.store.list_projects().await {
            Ok(projects) => projects,
            Err(e) => {
                tracing::warn!(error = %e, "listing projects for retention failed");
                return 0;
            }
        };
        projects.retain(|p| !p.retention.keeps_all());
        if !projects.is_empty() {
            let first = self.turn % projects.len();
            projects.rotate_left(first);
        }
        self.turn = self.turn.wrapping_add(1);
        let mut budget = BATCH;
        for project in projects {
            let Some(days) = project.retention.tickets_after_days else {
                continue;
            };
            for status in [TicketStatus::Resolved, TicketStatus::Closed] {
                if budget == 0 {
                    return BATCH;
                }
                budget -= self.sweep(&project, status, days, budget).await;
            }
        }
        BATCH - budget
    }

    /// Erases up to `budget` of the project's expired tickets of `status`; how many. They are
    /// erased together: on the embedded store their scrubs of the files then fall into one
    /// group and run once, not once per ticket.
    async fn sweep(
        &mut self,
        project: &Project,
        status: TicketStatus,
        days: u32,
        budget: usize,
    ) -> usize {
        let place = (project.id.clone(), status);
        let mut after = self.resume.remove(&place);
        let mut doomed = Vec::new();
        // Where the next round goes on from: none once the listing's end was reached.
        let mut resume = None;
        for read in 1..=PAGES {
            let query = TicketQuery {
                status: Some(status),
                after: after.clone(),
                limit: PAGE,
                ..TicketQuery::default()
            };
            let page = match self.store.list_tickets(&project.id, &query).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(project = %project.id, error = %e, "reading tickets for retention failed");
                    resume = after;
                    break;
                }
            };
            let now = self.clock.now();
            let expired = page.tickets.into_iter().filter(|t| expired(t, days, now));
            doomed.extend(expired.take(budget - doomed.len()));
            if doomed.len() == budget {
                // The rest of this page is looked at again next round.
                resume = after;
                break;
            }
            let Some(next) = page.next else { break };
            after = Some(next);
            if read == PAGES {
                resume = after.clone();
            }
        }
        if let Some(at) = resume {
            self.resume.insert(place, at);
        }
        let erased = futures_util::future::join_all(doomed.iter().map(|t| self.erase(t))).await;
        erased.into_iter().filter(|e| *e).count()
    }

    async fn erase(&self, ticket: &Ticket) -> bool {
        let key = TicketKey {
            project: ticket.project_id.clone(),
            slug: ticket.slug.clone(),
        };
        match self.tickets.erase(&key).await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                tracing::warn!(ticket = %key, error = %e, "retention could not erase a ticket");
                return false;
            }
        }
        metrics::counter!("fleety_retention_erased_total", "kind" => "ticket").increment(1);
        let by = AuditBy {
            actor: AuditActor::Retention,
            ip: None,
        };
        let record = by
            .record(&key.project, self.clock.now(), "ticket.deleted")
            .target(AuditTarget::new("ticket", &key.slug));
        if let Err(e) = self.store.record_audit(&record).await {
            tracing::warn!(ticket = %key, error = %e, "recording a retention erasure failed");
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleety_actors::domain::{Description, Slug, TicketSource, Title};

    #[test]
    fn only_finished_tickets_unchanged_for_the_whole_period_expire() {
        let now = Utc::now();
        let mut t = Ticket::opened(
            ProjectId::parse("acme").unwrap(),
            Slug::parse("brave-lynx-001").unwrap(),
            Title::parse("t").unwrap(),
            Description::parse("d").unwrap(),
            TicketSource::Api,
            None,
            now - TimeDelta::days(40),
        );
        assert!(!expired(&t, 30, now), "an open ticket is kept however old");
        t.status = TicketStatus::Resolved;
        assert!(expired(&t, 30, now));
        assert!(!expired(&t, 41, now));
        t.status = TicketStatus::Closed;
        t.updated_at = now - TimeDelta::days(30);
        assert!(expired(&t, 30, now), "exactly the period");
        t.updated_at = now - TimeDelta::days(29);
        assert!(!expired(&t, 30, now));
    }
}

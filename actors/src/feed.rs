//! Project-wide event feeds, the agent inbox: every ticket event of a project, tagged with the
//! ticket's slug, for agents watching all their tickets at once.
//!
//! A feed exists only while someone listens, so a project nobody watches costs nothing on the
//! hot path. Listeners that fall behind lose their place (`broadcast` lag) and are told so.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::domain::ProjectId;

/// Events buffered per feed before a lagging agent is cut off.
const FEED_BUFFER: usize = 1024;

#[derive(Clone, Default)]
pub struct ProjectFeeds {
    feeds: Arc<crate::FastMap<ProjectId, broadcast::Sender<Bytes>>>,
}

impl ProjectFeeds {
    /// The sender for a project's feed, if anyone is listening.
    pub fn sender(&self, project: &ProjectId) -> Option<broadcast::Sender<Bytes>> {
        let feed = self.feeds.get(project)?;
        (feed.receiver_count() > 0).then(|| feed.clone())
    }

    pub fn subscribe(&self, project: &ProjectId) -> broadcast::Receiver<Bytes> {
        self.feeds
            .entry(project.clone())
            .or_insert_with(|| broadcast::channel(FEED_BUFFER).0)
            .subscribe()
    }

    /// Drops the project's feed when its last listener has gone.
    pub fn release(&self, project: &ProjectId) {
        self.feeds
            .remove_if(project, |_, feed| feed.receiver_count() == 0);
    }

    /// Publishes an event that does not come from a ticket actor (a ticket was created).
    pub fn publish(&self, project: &ProjectId, frame: Bytes) {
        if let Some(feed) = self.sender(project) {
            let _ = feed.send(frame);
        }
    }
}

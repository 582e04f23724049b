//! Pieces every actor family shares: the periodic tick that drives passivation, and the guard
//! that keeps a registry free of slots whose actor never started.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use ractor::ActorRef;
use tokio::sync::OnceCell;

/// Sends `tick()` to `actor` every `every`, until the actor is gone. Missed ticks are not made
/// up: a busy actor gets one tick, not a burst.
pub fn spawn_ticker<M: ractor::Message>(actor: ActorRef<M>, every: Duration, tick: fn() -> M) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            interval.tick().await;
            if actor.send_message(tick()).is_err() {
                break;
            }
        }
    });
}

/// Removes a registry slot that is still empty when dropped: an activation that failed, timed
/// out, or whose caller went away leaves nothing behind.
pub(crate) struct SlotGuard<'a, K: std::hash::Hash + Eq + Clone, V> {
    pub registry: &'a DashMap<K, Arc<OnceCell<V>>>,
    pub key: &'a K,
    pub slot: &'a Arc<OnceCell<V>>,
}

impl<K: std::hash::Hash + Eq + Clone, V> Drop for SlotGuard<'_, K, V> {
    fn drop(&mut self) {
        if !self.slot.initialized() {
            self.registry.remove_if(self.key, |_, s| {
                Arc::ptr_eq(s, self.slot) && !s.initialized()
            });
        }
    }
}

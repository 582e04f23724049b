//! Message ids: RFC 4122 version-1 (time-based) UUIDs, the CQL `timeuuid` type.
//!
//! A ticket's actor is its only writer, so it can hand out ids that strictly increase within the
//! ticket: each id's timestamp is the later of "now" and "one tick after the previous id". Ids
//! therefore order messages, and `since=`, read cursors and paging all compare ids, never clocks.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// 100-nanosecond ticks between the Gregorian epoch (1582-10-15) and the Unix epoch.
const GREGORIAN_TO_UNIX_TICKS: u64 = 0x01B2_1DD2_1381_4000;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageId(Uuid);

impl MessageId {
    /// Below every real id (time zero): an open lower bound for range reads.
    pub const MIN: MessageId = MessageId(Uuid::from_bytes([
        0, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0, 0, 0, 0, 0,
    ]));
    /// Above every real id: an open upper bound for range reads.
    pub const MAX: MessageId = MessageId(Uuid::from_bytes([
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xbf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff,
    ]));

    /// The next id for a ticket whose newest message has id `previous`.
    pub fn next(previous: Option<MessageId>, now: DateTime<Utc>) -> MessageId {
        let now_ticks = unix_to_ticks(now);
        let ticks = match previous {
            Some(p) => now_ticks.max(p.ticks() + 1),
            None => now_ticks,
        };
        Self::from_ticks(ticks, rand::random())
    }

    fn from_ticks(ticks: u64, entropy: u64) -> MessageId {
        let ticks = ticks & 0x0FFF_FFFF_FFFF_FFFF;
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&(ticks as u32).to_be_bytes());
        b[4..6].copy_from_slice(&((ticks >> 32) as u16).to_be_bytes());
        b[6..8].copy_from_slice(&((((ticks >> 48) as u16) & 0x0FFF) | 0x1000).to_be_bytes());
        // Clock sequence (variant 10xx) and a random node with the multicast bit set, as RFC 4122
        // asks of nodes that are not MAC addresses.
        let e = entropy.to_be_bytes();
        b[8] = (e[0] & 0x3F) | 0x80;
        b[9] = e[1];
        b[10..16].copy_from_slice(&e[2..8]);
        b[10] |= 0x01;
        MessageId(Uuid::from_bytes(b))
    }

    /// The smallest id of the next tick: an exclusive upper bound that admits `self` and every
    /// id before it. CQL orders timeuuids of one tick by their last 8 bytes as *signed* bytes,
    /// so the smallest is 0x80 in each (what CQL's own `minTimeuuid` uses); ticks-only orders
    /// (our own, the embedded store's) are indifferent to them.
    pub fn bound_after(self) -> MessageId {
        let mut b = Self::from_ticks(self.ticks() + 1, 0).to_bytes();
        b[8..16].fill(0x80);
        MessageId(Uuid::from_bytes(b))
    }

    /// The id's timestamp, in 100 ns ticks since 1582-10-15.
    pub fn ticks(self) -> u64 {
        let b = self.0.as_bytes();
        let low = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64;
        let mid = u16::from_be_bytes([b[4], b[5]]) as u64;
        let high = (u16::from_be_bytes([b[6], b[7]]) & 0x0FFF) as u64;
        (high << 48) | (mid << 32) | low
    }

    /// When the id was minted.
    pub fn timestamp(self) -> DateTime<Utc> {
        let unix_ticks = self.ticks().saturating_sub(GREGORIAN_TO_UNIX_TICKS);
        let secs = (unix_ticks / 10_000_000) as i64;
        let nanos = ((unix_ticks % 10_000_000) * 100) as u32;
        DateTime::from_timestamp(secs, nanos).unwrap_or_default()
    }

    pub fn as_uuid(self) -> Uuid {
        self.0
    }

    pub fn from_uuid(uuid: Uuid) -> Option<MessageId> {
        (uuid.get_version_num() == 1).then_some(MessageId(uuid))
    }

    pub fn to_bytes(self) -> [u8; 16] {
        *self.0.as_bytes()
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Option<MessageId> {
        Self::from_uuid(Uuid::from_bytes(bytes))
    }
}

fn unix_to_ticks(t: DateTime<Utc>) -> u64 {
    let nanos = t.timestamp_nanos_opt().unwrap_or(0).max(0) as u64;
    nanos / 100 + GREGORIAN_TO_UNIX_TICKS
}

/// Time order, as CQL orders `timeuuid`; the bytes break ties between tickets.
impl Ord for MessageId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.ticks()
            .cmp(&other.ticks())
            .then_with(|| self.0.as_bytes().cmp(other.0.as_bytes()))
    }
}

impl PartialOrd for MessageId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.0.hyphenated())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not a message id")]
pub struct BadMessageId;

impl FromStr for MessageId {
    type Err = BadMessageId;

    /// Only the hyphenated form the API writes (36 characters), as its description says;
    /// `Uuid::try_parse` alone would take the braced, URN and bare forms as well.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 36 {
            return Err(BadMessageId);
        }
        let uuid = Uuid::try_parse(s).map_err(|_| BadMessageId)?;
        MessageId::from_uuid(uuid).ok_or(BadMessageId)
    }
}

impl Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0.hyphenated())
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_strictly_increase_even_when_the_clock_stands_still_or_goes_back() {
        let now = Utc::now();
        let a = MessageId::next(None, now);
        let b = MessageId::next(Some(a), now);
        let c = MessageId::next(Some(b), now - chrono::Duration::seconds(10));
        assert!(a < b && b < c);
        assert_eq!(b.ticks(), a.ticks() + 1);
    }

    #[test]
    fn ids_are_version_1_uuids_that_round_trip_through_text() {
        let id = MessageId::next(None, Utc::now());
        assert_eq!(id.as_uuid().get_version_num(), 1);
        let text = id.to_string();
        assert_eq!(text.parse::<MessageId>().unwrap(), id);
        assert!(Uuid::new_v4().to_string().parse::<MessageId>().is_err());
        assert!("nonsense".parse::<MessageId>().is_err());
    }

    #[test]
    fn min_and_max_bound_every_id() {
        let id = MessageId::next(None, Utc::now());
        assert!(MessageId::MIN < id && id < MessageId::MAX);
        assert_eq!(MessageId::MIN.as_uuid().get_version_num(), 1);
        assert_eq!(MessageId::MAX.as_uuid().get_version_num(), 1);
        assert!(id < id.bound_after());
    }

    #[test]
    fn the_timestamp_is_recovered_to_the_tick() {
        let now = DateTime::from_timestamp(1_700_000_000, 123_456_700).unwrap();
        let id = MessageId::next(None, now);
        assert_eq!(id.timestamp(), now);
    }
}

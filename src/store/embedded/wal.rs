//! The embedded store's write-ahead log: the record format, the segment files, and reading them
//! back after a crash.
//!
//! A group is acknowledged once its record is in the log and `fdatasync` has returned; redb
//! receives it afterwards in commits that are not durable by themselves. Frequent checkpoints
//! make redb durable and note the newest group they hold; a log segment whose groups are all
//! checkpointed is reused. After a crash the store replays the records newer than the checkpoint.
//!
//! Records hold the *effects* of a group (rows put or removed, with their final encoding), never
//! the requests: a conflict was already decided when the record was written, and replaying a
//! record twice, or replaying records the checkpoint already holds, leaves the same rows.
//!
//! A segment file starts with a 32-byte header: `FLTYWAL2`, a random salt chosen afresh each
//! time the file is (re)started, the record bytes written to the segment before it (`u64`, 0
//! after a start), a CRC-32 of those 24 bytes, and 4 bytes of padding. A record is
//! `len: u32 | crc32(salt, payload): u32 | payload`, where the payload is the group's sequence
//! number (`u64`) followed by its operations. Integers are little-endian; strings and byte
//! fields are a `u32` length and the bytes. Reading a
//! segment stops at the first record that is cut short, fails its checksum, or is older than the
//! segment's name says: the tail a crash tore (never acknowledged), or the leftovers of the
//! file's previous use. The salt also keeps bytes inside a stored message that happen to look
//! like a record from ever being read as one.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

/// One row-level change, borrowed from the group being committed or from a log being replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op<'a> {
    Project {
        id: &'a str,
        json: &'a [u8],
    },
    /// The ticket row and its entry in the by-time listing.
    Ticket {
        project: &'a str,
        slug: &'a str,
        created_ms: i64,
        status: &'a str,
        json: &'a [u8],
    },
    Message {
        project: &'a str,
        slug: &'a str,
        ticks: u64,
        json: &'a [u8],
    },
    /// Moves a read cursor forward; it never moves back, so an old record cannot undo a newer one.
    Cursor {
        project: &'a str,
        slug: &'a str,
        reader: &'a str,
        up_to: &'a [u8],
    },
    ChatTurn {
        project: &'a str,
        session: &'a str,
        ticks: u64,
        json: &'a [u8],
    },
    /// A chat session's conversation row, placed by when it started.
    ChatConversation {
        project: &'a str,
        started_ms: i64,
        session: &'a str,
        json: &'a [u8],
    },
    Note {
        project: &'a str,
        slug: &'a str,
        ticks: u64,
        json: &'a [u8],
    },
    /// A ticket's timeline entry.
    Activity {
        project: &'a str,
        slug: &'a str,
        ticks: u64,
        json: &'a [u8],
    },
    Article {
        project: &'a str,
        id: &'a str,
        json: &'a [u8],
    },
    DeleteArticle {
        project: &'a str,
        id: &'a str,
    },
    Webhook {
        project: &'a str,
        id: &'a str,
        json: &'a [u8],
    },
    DeleteWebhook {
        project: &'a str,
        id: &'a str,
    },
    /// A delivery past the log's retention, removed with its due entry.
    DeleteDelivery {
        project: &'a str,
        endpoint: &'a str,
        id: &'a str,
    },
    /// A delivery as now written, and when it is next due (`None` once settled).
    Delivery {
        project: &'a str,
        endpoint: &'a str,
        id: &'a str,
        due_ms: Option<i64>,
        json: &'a [u8],
    },
    /// A question the assistant could not answer, as now counted.
    Unanswered {
        project: &'a str,
        id: &'a str,
        json: &'a [u8],
    },
    DeleteUnanswered {
        project: &'a str,
        id: &'a str,
    },
    /// A member's row and the entry of its email in the project's email index.
    Member {
        project: &'a str,
        id: &'a str,
        email: &'a str,
        json: &'a [u8],
    },
    MemberSession {
        project: &'a str,
        member: &'a str,
        id: &'a str,
        json: &'a [u8],
    },
    DeleteMemberSession {
        project: &'a str,
        member: &'a str,
        id: &'a str,
    },
    /// A member's personal API token as now written.
    ApiToken {
        project: &'a str,
        id: &'a str,
        json: &'a [u8],
    },
    DeleteApiToken {
        project: &'a str,
        id: &'a str,
    },
    /// A member's second factor as now written.
    MemberTotp {
        project: &'a str,
        member: &'a str,
        json: &'a [u8],
    },
    DeleteMemberTotp {
        project: &'a str,
        member: &'a str,
    },
    /// A canned reply as now written.
    Canned {
        project: &'a str,
        id: &'a str,
        json: &'a [u8],
    },
    DeleteCanned {
        project: &'a str,
        id: &'a str,
    },
    /// An invitation or password-reset link (its id is its token's digest).
    MemberLink {
        project: &'a str,
        id: &'a str,
        json: &'a [u8],
    },
    DeleteMemberLink {
        project: &'a str,
        id: &'a str,
    },
    /// An audit record (issue 26); the key orders a project's trail by time.
    Audit {
        project: &'a str,
        at_ms: i64,
        id: &'a str,
        json: &'a [u8],
    },
    /// Removes an audit record past its retention.
    DeleteAudit {
        project: &'a str,
        at_ms: i64,
        id: &'a str,
    },
    /// An outbox email as now written, and when it is next due (`None` once settled).
    Email {
        id: &'a str,
        due_ms: Option<i64>,
        json: &'a [u8],
    },
    /// A ticket's visitor-mail record as now written, and when it is due (`None` while no
    /// email waits).
    VisitorMail {
        project: &'a str,
        slug: &'a str,
        due_ms: Option<i64>,
        json: &'a [u8],
    },
    /// A contact as now written (issue 28); the id is its order key.
    Contact {
        project: &'a str,
        id: &'a str,
        json: &'a [u8],
    },
    /// A contact's entry for a ticket it opened, recorded with the ticket's creation.
    ContactTicket {
        project: &'a str,
        contact: &'a str,
        created_ms: i64,
        slug: &'a str,
    },
    /// A member's notification switches as now written (issue 28).
    NotificationPrefs {
        project: &'a str,
        member: &'a str,
        json: &'a [u8],
    },
    /// A reply by email that was posted on a ticket, by its mail's key.
    InboundMail {
        project: &'a str,
        slug: &'a str,
        key: &'a str,
        json: &'a [u8],
    },
    /// Erases a ticket and every row carrying its words (see `Tables::erase_ticket`). Names
    /// the ticket only: the record of an erasure holds nothing of what it erases.
    EraseTicket {
        project: &'a str,
        slug: &'a str,
    },
    /// An erasure begun (the JSON `Erasure`).
    Erasure {
        project: &'a str,
        slug: &'a str,
        json: &'a [u8],
    },
    /// An erasure finished.
    DeleteErasure {
        project: &'a str,
        slug: &'a str,
    },
    /// Erases a contact's row and its ticket index (see `Tables::erase_contact`); by the
    /// contact's order key.
    EraseContact {
        project: &'a str,
        contact: &'a str,
    },
    /// A contact erasure begun (the JSON `ContactErasure`).
    ContactErasure {
        project: &'a str,
        contact: &'a str,
        json: &'a [u8],
    },
    /// A contact erasure finished.
    DeleteContactErasure {
        project: &'a str,
        contact: &'a str,
    },
}

/// A record's header: its payload's length and checksum.
const HEADER: usize = 8;
/// A segment file starts with this and a random salt, chosen each time the file is (re)started
/// and mixed into every record's checksum. Records left from the file's earlier use, or bytes
/// inside a stored message that look like a record, then fail the checksum. After the salt come
/// the record bytes written to the segment before this one (0 for the first after a start), so
/// recovery knows exactly where that segment should end, and the header's own checksum.
const MAGIC: &[u8; 8] = b"FLTYWAL2";
pub const SEGMENT_HEADER: usize = 32;
/// A record larger than this is corrupt: a group holds at most a few thousand bounded writes.
const MAX_RECORD: usize = 1 << 30;

/// Builds one group's record. It stays empty (and is not written) if the group changed nothing.
pub struct RecordBuf {
    buf: Vec<u8>,
    ops: usize,
}

impl RecordBuf {
    pub fn new(seq: u64) -> Self {
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(&[0; HEADER]);
        buf.extend_from_slice(&seq.to_le_bytes());
        Self { buf, ops: 0 }
    }

    pub fn push(&mut self, op: &Op<'_>) {
        self.ops += 1;
        let b = &mut self.buf;
        match *op {
            Op::Project { id, json } => {
                b.push(1);
                put(b, id.as_bytes());
                put(b, json);
            }
            Op::Ticket {
                project,
                slug,
                created_ms,
                status,
                json,
            } => {
                b.push(2);
                put(b, project.as_bytes());
                put(b, slug.as_bytes());
                b.extend_from_slice(&created_ms.to_le_bytes());
                put(b, status.as_bytes());
                put(b, json);
            }
            Op::Message {
                project,
                slug,
                ticks,
                json,
            } => {
                b.push(3);
                put(b, project.as_bytes());
                put(b, slug.as_bytes());
                b.extend_from_slice(&ticks.to_le_bytes());
                put(b, json);
            }
            Op::Cursor {
                project,
                slug,
                reader,
                up_to,
            } => {
                b.push(4);
                put(b, project.as_bytes());
                put(b, slug.as_bytes());
                put(b, reader.as_bytes());
                put(b, up_to);
            }
            Op::ChatTurn {
                project,
                session,
                ticks,
                json,
            } => {
                b.push(5);
                put(b, project.as_bytes());
                put(b, session.as_bytes());
                b.extend_from_slice(&ticks.to_le_bytes());
                put(b, json);
            }
            Op::ChatConversation {
                project,
                started_ms,
                session,
                json,
            } => {
                // Tag 22 (20 and 21 are the unanswered questions' ops).
                b.push(22);
                put(b, project.as_bytes());
                b.extend_from_slice(&started_ms.to_le_bytes());
                put(b, session.as_bytes());
                put(b, json);
            }
            Op::Article { project, id, json } => {
                b.push(6);
                put(b, project.as_bytes());
                put(b, id.as_bytes());
                put(b, json);
            }
            Op::DeleteArticle { project, id } => {
                b.push(7);
                put(b, project.as_bytes());
                put(b, id.as_bytes());
            }
            Op::Note {
                project,
                slug,
                ticks,
                json,
            } => {
                b.push(8);
                put(b, project.as_bytes());
                put(b, slug.as_bytes());
                b.extend_from_slice(&ticks.to_le_bytes());
                put(b, json);
            }
            Op::Activity {
                project,
                slug,
                ticks,
                json,
            } => {
                b.push(75);
                put(b, project.as_bytes());
                put(b, slug.as_bytes());
                b.extend_from_slice(&ticks.to_le_bytes());
                put(b, json);
            }
            Op::Webhook { project, id, json } => {
                b.push(9);
                put(b, project.as_bytes());
                put(b, id.as_bytes());
                put(b, json);
            }
            Op::DeleteWebhook { project, id } => {
                b.push(10);
                put(b, project.as_bytes());
                put(b, id.as_bytes());
            }
            Op::Delivery {
                project,
                endpoint,
                id,
                due_ms,
                json,
            } => {
                b.push(11);
                put(b, project.as_bytes());
                put(b, endpoint.as_bytes());
                put(b, id.as_bytes());
                b.push(u8::from(due_ms.is_some()));
                b.extend_from_slice(&due_ms.unwrap_or(0).to_le_bytes());
                put(b, json);
            }
            // 20 and up: numbers well apart from those other changes may add meanwhile.
            Op::Unanswered { project, id, json } => {
                b.push(20);
                put(b, project.as_bytes());
                put(b, id.as_bytes());
                put(b, json);
            }
            Op::DeleteUnanswered { project, id } => {
                b.push(21);
                put(b, project.as_bytes());
                put(b, id.as_bytes());
            }
            // 30 to 34 are the members' (issue 26); 31 to 34 beside 30 leave room for its
            // invitations and tokens.
            Op::Member {
                project,
                id,
                email,
                json,
            } => {
                b.push(30);
                put(b, project.as_bytes());
                put(b, id.as_bytes());
                put(b, email.as_bytes());
                put(b, json);
            }
            Op::MemberSession {
                project,
                member,
                id,
                json,
            } => {
                b.push(31);
                put(b, project.as_bytes());
                put(b, member.as_bytes());
                put(b, id.as_bytes());
                put(b, json);
            }
            Op::DeleteMemberSession {
                project,
                member,
                id,
            } => {
                b.push(32);
                put(b, project.as_bytes());
                put(b, member.as_bytes());
                put(b, id.as_bytes());
            }
            // 55 to 59 are the members' second factor and tokens (55 to 58 taken).
            Op::ApiToken { project, id, json } => {
                b.push(55);
                put(b, project.as_bytes());
                put(b, id.as_bytes());
                put(b, json);
            }
            Op::DeleteApiToken { project, id } => {
                b.push(56);
                put(b, project.as_bytes());
                put(b, id.as_bytes());
            }
            Op::MemberTotp {
                project,
                member,
                json,
            } => {
                b.push(57);
                put(b, project.as_bytes());
                put(b, member.as_bytes());
                put(b, json);
            }
            Op::DeleteMemberTotp { project, member } => {
                b.push(58);
                put(b, project.as_bytes());
                put(b, member.as_bytes());
            }
            // 40 to 44 are the canned replies' (40 and 41 taken).
            Op::Canned { project, id, json } => {
                b.push(40);
                put(b, project.as_bytes());
                put(b, id.as_bytes());
                put(b, json);
            }
            Op::DeleteCanned { project, id } => {
                b.push(41);
                put(b, project.as_bytes());
                put(b, id.as_bytes());
            }
            // 50 to 54 are the invitation and reset links' (50 and 51 taken).
            Op::MemberLink { project, id, json } => {
                b.push(50);
                put(b, project.as_bytes());
                put(b, id.as_bytes());
                put(b, json);
            }
            Op::DeleteMemberLink { project, id } => {
                b.push(51);
                put(b, project.as_bytes());
                put(b, id.as_bytes());
            }
            // 65 to 69 are the audit trail's (issue 26).
            Op::Audit {
                project,
                at_ms,
                id,
                json,
            } => {
                b.push(65);
                put(b, project.as_bytes());
                b.extend_from_slice(&(at_ms as u64).to_le_bytes());
                put(b, id.as_bytes());
                put(b, json);
            }
            Op::DeleteAudit { project, at_ms, id } => {
                b.push(66);
                put(b, project.as_bytes());
                b.extend_from_slice(&(at_ms as u64).to_le_bytes());
                put(b, id.as_bytes());
            }
            // 85 to 88 are the email outbox's (issue 28).
            Op::Email { id, due_ms, json } => {
                b.push(85);
                put(b, id.as_bytes());
                b.push(u8::from(due_ms.is_some()));
                b.extend_from_slice(&due_ms.unwrap_or(0).to_le_bytes());
                put(b, json);
            }
            // 86 to 88 are the visitor mails' (issue 28; 86 taken).
            Op::VisitorMail {
                project,
                slug,
                due_ms,
                json,
            } => {
                b.push(86);
                put(b, project.as_bytes());
                put(b, slug.as_bytes());
                b.push(u8::from(due_ms.is_some()));
                b.extend_from_slice(&due_ms.unwrap_or(0).to_le_bytes());
                put(b, json);
            }
            // 80 to 84 are the contacts' (issue 28; 80 and 81 taken).
            Op::Contact { project, id, json } => {
                b.push(80);
                put(b, project.as_bytes());
                put(b, id.as_bytes());
                put(b, json);
            }
            Op::ContactTicket {
                project,
                contact,
                created_ms,
                slug,
            } => {
                b.push(81);
                put(b, project.as_bytes());
                put(b, contact.as_bytes());
                b.extend_from_slice(&(created_ms as u64).to_le_bytes());
                put(b, slug.as_bytes());
            }
            // 90 to 92 are the emails to agents' (issue 28; 90 taken).
            Op::NotificationPrefs {
                project,
                member,
                json,
            } => {
                b.push(90);
                put(b, project.as_bytes());
                put(b, member.as_bytes());
                put(b, json);
            }
            // 89 is the replies by email's (issue 28).
            Op::InboundMail {
                project,
                slug,
                key,
                json,
            } => {
                b.push(89);
                put(b, project.as_bytes());
                put(b, slug.as_bytes());
                put(b, key.as_bytes());
                put(b, json);
            }
            Op::EraseTicket { project, slug } => {
                b.push(52);
                put(b, project.as_bytes());
                put(b, slug.as_bytes());
            }
            Op::Erasure {
                project,
                slug,
                json,
            } => {
                b.push(53);
                put(b, project.as_bytes());
                put(b, slug.as_bytes());
                put(b, json);
            }
            Op::DeleteErasure { project, slug } => {
                b.push(54);
                put(b, project.as_bytes());
                put(b, slug.as_bytes());
            }
            // 59 to 64 are the contact erasure's (issue 29).
            Op::EraseContact { project, contact } => {
                b.push(59);
                put(b, project.as_bytes());
                put(b, contact.as_bytes());
            }
            Op::ContactErasure {
                project,
                contact,
                json,
            } => {
                b.push(60);
                put(b, project.as_bytes());
                put(b, contact.as_bytes());
                put(b, json);
            }
            Op::DeleteContactErasure { project, contact } => {
                b.push(61);
                put(b, project.as_bytes());
                put(b, contact.as_bytes());
            }
            Op::DeleteDelivery {
                project,
                endpoint,
                id,
            } => {
                b.push(12);
                put(b, project.as_bytes());
                put(b, endpoint.as_bytes());
                put(b, id.as_bytes());
            }
        }
    }

    /// The framed record, or nothing if no operation was pushed. Its checksum is filled in by
    /// [`Log::seal`], because it covers the salt of the segment it is written to.
    pub fn finish(mut self) -> Vec<u8> {
        if self.ops == 0 {
            return Vec::new();
        }
        // Groups are at most MAX_GROUP writes of bounded size: far below 4 GiB.
        let len = u32::try_from(self.buf.len() - HEADER).unwrap_or(u32::MAX);
        self.buf[..4].copy_from_slice(&len.to_le_bytes());
        self.buf
    }
}

/// The checksum of a record in a segment with `salt`.
fn checksum(salt: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&salt.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Fills in a finished record's checksum for a segment with `salt`.
fn seal(record: &mut [u8], salt: u64) {
    if record.len() >= HEADER {
        let crc = checksum(salt, &record[HEADER..]);
        record[4..HEADER].copy_from_slice(&crc.to_le_bytes());
    }
}

/// A record as the writer built it, read back in memory without a checksum.
pub fn unsealed(bytes: &[u8]) -> Option<Record<'_>> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let payload = bytes.get(HEADER..HEADER.checked_add(len)?)?;
    let (seq, body) = payload.split_at_checked(8)?;
    Some(Record {
        seq: u64::from_le_bytes(seq.try_into().ok()?),
        body,
    })
}

fn put(b: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("a field fits in 4 GiB");
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(bytes);
}

/// A record read back: its group's sequence number and its encoded operations.
pub struct Record<'a> {
    pub seq: u64,
    body: &'a [u8],
}

/// The whole, checksummed records at the start of `bytes`, in order. Stops at the first record
/// that is cut short, fails its checksum, or is older than the segment: the end of what was
/// written since the segment was last started.
pub struct Records<'a> {
    rest: &'a [u8],
    salt: u64,
    first_seq: u64,
    /// Record bytes read so far.
    read: usize,
    /// The bytes of the file's header.
    header: usize,
    /// From the header: the record bytes written to the segment before this one, if known.
    previous: Option<u64>,
}

fn records(bytes: &[u8], salt: u64, first_seq: u64) -> Records<'_> {
    Records {
        rest: bytes,
        salt,
        first_seq,
        read: 0,
        header: 0,
        previous: None,
    }
}

fn le_u64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().unwrap_or_default())
}

/// The records of a segment file whose name says it starts at group `first_seq`. A file without
/// a valid header holds none.
pub fn segment(bytes: &[u8], first_seq: u64) -> Records<'_> {
    let header = bytes.get(..SEGMENT_HEADER).filter(|h| h[..8] == MAGIC[..]);
    let Some(h) = header.filter(|h| {
        let crc = u32::from_le_bytes(h[24..28].try_into().unwrap_or_default());
        crc32fast::hash(&h[..24]) == crc
    }) else {
        return records(&[], 0, first_seq);
    };
    let previous = le_u64(&h[16..24]);
    Records {
        header: SEGMENT_HEADER,
        previous: (previous > 0).then_some(previous),
        ..records(&bytes[SEGMENT_HEADER..], le_u64(&h[8..16]), first_seq)
    }
}

/// Whether a segment that is not the newest stopped reading before its end. Every record in it
/// was synced before it was acknowledged and before the writer moved on, so an older segment
/// whose records stop short was damaged after they were written: unlike the newest segment,
/// it cannot have a tail torn by a crash.
///
/// `read` is how many bytes its records take up ([`Records::read`]) and `end` how many it was
/// written, as the next segment's header says ([`Records::previous`]); a header that says
/// nothing (the first segment after a start) leaves `SEGMENT_BYTES`, since the writer moves on
/// only once a segment is full.
/// `newest` is the last group read from it, and `next` the first group a later segment holds.
/// Nothing is missing when every group before `next` is already in redb's checkpoint (a file
/// left over from a restart), or when its last record read is the group just before `next`.
pub fn ends_early(read: usize, end: u64, newest: Option<u64>, next: u64, checkpoint: u64) -> bool {
    let full = read as u64 >= end;
    let needed = next.saturating_sub(1) > checkpoint;
    let reached = newest.is_some_and(|seq| seq + 1 >= next);
    !full && needed && !reached
}

impl<'a> Records<'a> {
    /// How many bytes follow the last record read.
    pub fn rest(&self) -> usize {
        self.rest.len()
    }

    /// How many bytes the records read so far take up.
    pub fn read(&self) -> usize {
        self.read
    }

    /// Where in the file reading stopped.
    pub fn offset(&self) -> usize {
        self.header + self.read
    }

    /// The record bytes written to the segment before this one, as this one's header records.
    pub fn previous(&self) -> Option<u64> {
        self.previous
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        let header = self.rest.get(..HEADER)?;
        let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
        if !(8..=MAX_RECORD).contains(&len) {
            return None;
        }
        let payload = self.rest.get(HEADER..HEADER + len)?;
        if checksum(self.salt, payload) != crc {
            return None;
        }
        let record = unsealed(self.rest)?;
        if record.seq < self.first_seq {
            return None;
        }
        self.rest = &self.rest[HEADER + len..];
        self.read += HEADER + len;
        Some(record)
    }
}

/// A record whose checksum holds but whose operations cannot be read: written by a different
/// version, or a bug. Replay refuses it rather than guess.
#[derive(Debug, thiserror::Error)]
#[error("write-ahead log record {seq} is unreadable at byte {at}")]
pub struct Unreadable {
    pub seq: u64,
    pub at: usize,
}

impl<'a> Record<'a> {
    pub fn ops(&self) -> Result<Vec<Op<'a>>, Unreadable> {
        let mut r = Reader {
            body: self.body,
            at: 0,
        };
        let mut ops = Vec::new();
        while r.at < r.body.len() {
            let op = r.op().ok_or(Unreadable {
                seq: self.seq,
                at: r.at,
            })?;
            ops.push(op);
        }
        Ok(ops)
    }
}

struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.body.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(out)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        self.take(len)
    }

    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    fn op(&mut self) -> Option<Op<'a>> {
        let tag = *self.take(1)?.first()?;
        Some(match tag {
            1 => Op::Project {
                id: self.str()?,
                json: self.bytes()?,
            },
            2 => Op::Ticket {
                project: self.str()?,
                slug: self.str()?,
                created_ms: self.u64()? as i64,
                status: self.str()?,
                json: self.bytes()?,
            },
            3 => Op::Message {
                project: self.str()?,
                slug: self.str()?,
                ticks: self.u64()?,
                json: self.bytes()?,
            },
            4 => Op::Cursor {
                project: self.str()?,
                slug: self.str()?,
                reader: self.str()?,
                up_to: self.bytes()?,
            },
            5 => Op::ChatTurn {
                project: self.str()?,
                session: self.str()?,
                ticks: self.u64()?,
                json: self.bytes()?,
            },
            6 => Op::Article {
                project: self.str()?,
                id: self.str()?,
                json: self.bytes()?,
            },
            7 => Op::DeleteArticle {
                project: self.str()?,
                id: self.str()?,
            },
            8 => Op::Note {
                project: self.str()?,
                slug: self.str()?,
                ticks: self.u64()?,
                json: self.bytes()?,
            },
            75 => Op::Activity {
                project: self.str()?,
                slug: self.str()?,
                ticks: self.u64()?,
                json: self.bytes()?,
            },
            9 => Op::Webhook {
                project: self.str()?,
                id: self.str()?,
                json: self.bytes()?,
            },
            10 => Op::DeleteWebhook {
                project: self.str()?,
                id: self.str()?,
            },
            11 => Op::Delivery {
                project: self.str()?,
                endpoint: self.str()?,
                id: self.str()?,
                due_ms: {
                    let present = *self.take(1)?.first()?;
                    let due = self.u64()? as i64;
                    match present {
                        0 => None,
                        1 => Some(due),
                        _ => return None,
                    }
                },
                json: self.bytes()?,
            },
            12 => Op::DeleteDelivery {
                project: self.str()?,
                endpoint: self.str()?,
                id: self.str()?,
            },
            20 => Op::Unanswered {
                project: self.str()?,
                id: self.str()?,
                json: self.bytes()?,
            },
            21 => Op::DeleteUnanswered {
                project: self.str()?,
                id: self.str()?,
            },
            22 => Op::ChatConversation {
                project: self.str()?,
                started_ms: self.u64()? as i64,
                session: self.str()?,
                json: self.bytes()?,
            },
            30 => Op::Member {
                project: self.str()?,
                id: self.str()?,
                email: self.str()?,
                json: self.bytes()?,
            },
            31 => Op::MemberSession {
                project: self.str()?,
                member: self.str()?,
                id: self.str()?,
                json: self.bytes()?,
            },
            32 => Op::DeleteMemberSession {
                project: self.str()?,
                member: self.str()?,
                id: self.str()?,
            },
            55 => Op::ApiToken {
                project: self.str()?,
                id: self.str()?,
                json: self.bytes()?,
            },
            56 => Op::DeleteApiToken {
                project: self.str()?,
                id: self.str()?,
            },
            57 => Op::MemberTotp {
                project: self.str()?,
                member: self.str()?,
                json: self.bytes()?,
            },
            58 => Op::DeleteMemberTotp {
                project: self.str()?,
                member: self.str()?,
            },
            40 => Op::Canned {
                project: self.str()?,
                id: self.str()?,
                json: self.bytes()?,
            },
            41 => Op::DeleteCanned {
                project: self.str()?,
                id: self.str()?,
            },
            50 => Op::MemberLink {
                project: self.str()?,
                id: self.str()?,
                json: self.bytes()?,
            },
            51 => Op::DeleteMemberLink {
                project: self.str()?,
                id: self.str()?,
            },
            65 => Op::Audit {
                project: self.str()?,
                at_ms: self.u64()? as i64,
                id: self.str()?,
                json: self.bytes()?,
            },
            66 => Op::DeleteAudit {
                project: self.str()?,
                at_ms: self.u64()? as i64,
                id: self.str()?,
            },
            85 => Op::Email {
                id: self.str()?,
                due_ms: {
                    let present = *self.take(1)?.first()?;
                    let due = self.u64()? as i64;
                    match present {
                        0 => None,
                        1 => Some(due),
                        _ => return None,
                    }
                },
                json: self.bytes()?,
            },
            86 => Op::VisitorMail {
                project: self.str()?,
                slug: self.str()?,
                due_ms: {
                    let present = *self.take(1)?.first()?;
                    let due = self.u64()? as i64;
                    match present {
                        0 => None,
                        1 => Some(due),
                        _ => return None,
                    }
                },
                json: self.bytes()?,
            },
            80 => Op::Contact {
                project: self.str()?,
                id: self.str()?,
                json: self.bytes()?,
            },
            81 => Op::ContactTicket {
                project: self.str()?,
                contact: self.str()?,
                created_ms: self.u64()? as i64,
                slug: self.str()?,
            },
            90 => Op::NotificationPrefs {
                project: self.str()?,
                member: self.str()?,
                json: self.bytes()?,
            },
            89 => Op::InboundMail {
                project: self.str()?,
                slug: self.str()?,
                key: self.str()?,
                json: self.bytes()?,
            },
            52 => Op::EraseTicket {
                project: self.str()?,
                slug: self.str()?,
            },
            53 => Op::Erasure {
                project: self.str()?,
                slug: self.str()?,
                json: self.bytes()?,
            },
            54 => Op::DeleteErasure {
                project: self.str()?,
                slug: self.str()?,
            },
            59 => Op::EraseContact {
                project: self.str()?,
                contact: self.str()?,
            },
            60 => Op::ContactErasure {
                project: self.str()?,
                contact: self.str()?,
                json: self.bytes()?,
            },
            61 => Op::DeleteContactErasure {
                project: self.str()?,
                contact: self.str()?,
            },
            _ => return None,
        })
    }
}

/// The segment files, oldest first: `<first seq, 20 digits>.wal` in the log directory.
pub fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            out.push((first, path));
        }
    }
    out.sort();
    Ok(out)
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.wal"))
}

/// Gives a segment file its blocks up front (up to the segment size), so that a sync while it
/// fills need not record a new file size. Where the file system cannot, the file grows as written.
fn preallocate(file: &File) {
    let mode = rustix::fs::FallocateFlags::empty();
    if let Err(e) = rustix::fs::fallocate(file, mode, 0, SEGMENT_BYTES) {
        tracing::debug!(error = %e, "cannot preallocate a log segment");
    }
}

/// Makes a directory entry created or removed in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Bytes after which the writer moves on to the next segment.
pub const SEGMENT_BYTES: u64 = 32 << 20;

/// The log's segment files: the one being written and the one before it. Once the current one
/// is full and a checkpoint holds every group in the one before, that older file is renamed for
/// the next group and written again from its start. Overwriting blocks a file already has lets
/// `fdatasync` flush just the data; appending makes every sync commit the file system's journal
/// too, which costs more and can stall (figures in `docs/benchmarks.md`). The
/// stale records left after the new ones belong to checkpointed groups, which replay skips.
pub struct Log {
    dir: PathBuf,
    current: Segment,
    previous: Option<Segment>,
    /// Bytes written to the current segment.
    written: u64,
}

struct Segment {
    path: PathBuf,
    file: File,
    first_seq: u64,
    salt: u64,
}

impl Segment {
    /// Starts writing `file` from its beginning, under a fresh salt.
    /// `previous` is how many record bytes went into the segment before this one (0: none).
    fn begin(path: PathBuf, mut file: File, first_seq: u64, previous: u64) -> io::Result<Self> {
        let salt = rand::random::<u64>();
        file.seek(SeekFrom::Start(0))?;
        let mut header = [0u8; SEGMENT_HEADER];
        header[..8].copy_from_slice(MAGIC);
        header[8..16].copy_from_slice(&salt.to_le_bytes());
        header[16..24].copy_from_slice(&previous.to_le_bytes());
        let crc = crc32fast::hash(&header[..24]);
        header[24..28].copy_from_slice(&crc.to_le_bytes());
        file.write_all(&header)?;
        Ok(Self {
            path,
            file,
            first_seq,
            salt,
        })
    }
}

impl Log {
    /// Opens the segment for records from `first_seq` on, reusing the largest existing segment
    /// file, and deletes the others: the caller has made everything before `first_seq` durable
    /// elsewhere.
    pub fn start(dir: &Path, first_seq: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = segment_path(dir, first_seq);
        let mut existing = Vec::new();
        for (_, old) in segments(dir)? {
            existing.push((std::fs::metadata(&old)?.len(), old));
        }
        existing.sort();
        let largest = existing.pop();
        // The others go first, durably. Renamed first, the reused file could sit after a crash
        // beside a newer, empty segment with its own records too old for its new name, and
        // recovery would have no way to tell that from a damaged log.
        for (_, old) in &existing {
            std::fs::remove_file(old)?;
        }
        if !existing.is_empty() {
            sync_dir(dir)?;
        }
        // The largest file is reused under the new name.
        if let Some((_, largest)) = largest {
            if largest != path {
                std::fs::rename(&largest, &path)?;
            }
        }
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        preallocate(&file);
        // The file must be found under this name after a crash before anything acknowledged is
        // written to it.
        file.sync_all()?;
        sync_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            current: Segment::begin(path, file, first_seq, 0)?,
            previous: None,
            written: 0,
        })
    }

    /// Called before writing from group `next_seq` on. Once the current segment is full,
    /// writing moves to the next one, reusing the older file if redb's checkpoint
    /// (`checkpointed`) holds all of its groups. If it does not yet, the current segment grows.
    pub fn make_room(&mut self, checkpointed: u64, next_seq: u64) -> io::Result<()> {
        if self.written < SEGMENT_BYTES {
            return Ok(());
        }
        let path = segment_path(&self.dir, next_seq);
        let file = match self.previous.take() {
            Some(old) if checkpointed + 1 >= self.current.first_seq => {
                std::fs::rename(&old.path, &path)?;
                old.file
            }
            Some(old) => {
                self.previous = Some(old);
                return Ok(());
            }
            None => {
                let file = File::options()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .open(&path)?;
                preallocate(&file);
                file
            }
        };
        sync_dir(&self.dir)?;
        let next = Segment::begin(path, file, next_seq, self.written)?;
        self.previous = Some(std::mem::replace(&mut self.current, next));
        self.written = 0;
        Ok(())
    }

    /// Fills in a finished record's checksum for the current segment; call it after
    /// [`Log::make_room`] and before appending the record.
    pub fn seal(&self, record: &mut [u8]) {
        seal(record, self.current.salt);
    }

    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.current.file.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.current.file.sync_data()
    }

    /// Overwrites every byte of every segment with zeros and starts the log afresh for
    /// records from `next_seq` on: an erasure's way to leave none of the erased rows in the
    /// log, stale records of a reused file included. The caller has made every group before
    /// `next_seq` durable elsewhere (a checkpoint), so nothing the log held is needed. A crash
    /// midway leaves zeroed files, which hold no record, beside records all checkpointed.
    pub fn scrub(&mut self, next_seq: u64) -> io::Result<()> {
        if let Some(old) = self.previous.take() {
            zero(&old.file)?;
            std::fs::remove_file(&old.path)?;
        }
        // Any other file in the directory (none is expected) goes too.
        for (_, other) in segments(&self.dir)? {
            if other != self.current.path {
                let file = File::options().write(true).open(&other)?;
                zero(&file)?;
                std::fs::remove_file(&other)?;
            }
        }
        zero(&self.current.file)?;
        let path = segment_path(&self.dir, next_seq);
        if path != self.current.path {
            std::fs::rename(&self.current.path, &path)?;
        }
        sync_dir(&self.dir)?;
        let file = self.current.file.try_clone()?;
        self.current = Segment::begin(path, file, next_seq, 0)?;
        self.written = 0;
        self.current.file.sync_data()
    }
}

/// Writes zeros over the whole of `file` and syncs them.
fn zero(file: &File) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Op<'static>> {
        vec![
            Op::Project {
                id: "p1",
                json: b"{}",
            },
            Op::Ticket {
                project: "p1",
                slug: "swift-bear-053",
                created_ms: -5,
                status: "open",
                json: b"{\"t\":1}",
            },
            Op::Message {
                project: "p1",
                slug: "swift-bear-053",
                ticks: u64::MAX - 1,
                json: b"{\"m\":1}",
            },
            Op::Cursor {
                project: "p1",
                slug: "swift-bear-053",
                reader: "agent",
                up_to: &[7; 16],
            },
            Op::ChatTurn {
                project: "p1",
                session: "s",
                ticks: 9,
                json: b"[]",
            },
            Op::ChatConversation {
                project: "p1",
                started_ms: -7,
                session: "s",
                json: b"{}",
            },
            Op::Article {
                project: "p1",
                id: "a",
                json: b"",
            },
            Op::DeleteArticle {
                project: "p1",
                id: "a",
            },
            Op::Note {
                project: "p1",
                slug: "swift-bear-053",
                ticks: 11,
                json: b"{\"n\":1}",
            },
            Op::Activity {
                project: "p1",
                slug: "swift-bear-053",
                ticks: 12,
                json: b"{\"a\":1}",
            },
            Op::Webhook {
                project: "p1",
                id: "e",
                json: b"{}",
            },
            Op::DeleteWebhook {
                project: "p1",
                id: "e",
            },
            Op::Delivery {
                project: "p1",
                endpoint: "e",
                id: "msg_1",
                due_ms: Some(-5),
                json: b"{}",
            },
            Op::Delivery {
                project: "p1",
                endpoint: "e",
                id: "msg_1",
                due_ms: None,
                json: b"{}",
            },
            Op::DeleteDelivery {
                project: "p1",
                endpoint: "e",
                id: "msg_1",
            },
            Op::Email {
                id: "eml_1",
                due_ms: Some(7),
                json: b"{}",
            },
            Op::Email {
                id: "eml_1",
                due_ms: None,
                json: b"{}",
            },
            Op::VisitorMail {
                project: "p1",
                slug: "swift-bear-053",
                due_ms: Some(9),
                json: b"{}",
            },
            Op::VisitorMail {
                project: "p1",
                slug: "swift-bear-053",
                due_ms: None,
                json: b"{}",
            },
            Op::Unanswered {
                project: "p1",
                id: "0123456789abcdef",
                json: b"{}",
            },
            Op::DeleteUnanswered {
                project: "p1",
                id: "0123456789abcdef",
            },
            Op::Member {
                project: "p1",
                id: "m",
                email: "dana@example.com",
                json: b"{}",
            },
            Op::MemberSession {
                project: "p1",
                member: "m",
                id: "ab",
                json: b"{}",
            },
            Op::DeleteMemberSession {
                project: "p1",
                member: "m",
                id: "ab",
            },
            Op::ApiToken {
                project: "p1",
                id: "t",
                json: b"{}",
            },
            Op::DeleteApiToken {
                project: "p1",
                id: "t",
            },
            Op::MemberTotp {
                project: "p1",
                member: "m",
                json: b"{}",
            },
            Op::DeleteMemberTotp {
                project: "p1",
                member: "m",
            },
            Op::Canned {
                project: "p1",
                id: "c",
                json: b"{\"shortcut\":\"hi\"}",
            },
            Op::DeleteCanned {
                project: "p1",
                id: "c",
            },
            Op::MemberLink {
                project: "p1",
                id: "ab",
                json: b"{}",
            },
            Op::DeleteMemberLink {
                project: "p1",
                id: "ab",
            },
            Op::Audit {
                project: "p1",
                at_ms: 1_700_000_000_000,
                id: "a",
                json: b"{}",
            },
            Op::DeleteAudit {
                project: "p1",
                at_ms: -3,
                id: "a",
            },
            Op::Contact {
                project: "p1",
                id: "00000000-0000-0000-0000-000000000007",
                json: b"{}",
            },
            Op::ContactTicket {
                project: "p1",
                contact: "00000000-0000-0000-0000-000000000007",
                created_ms: 1_700_000_000_000,
                slug: "swift-bear-053",
            },
            Op::InboundMail {
                project: "p1",
                slug: "swift-bear-053",
                key: "9f86d081",
                json: b"{}",
            },
            Op::NotificationPrefs {
                project: "p1",
                member: "00000000-0000-0000-0000-000000000007",
                json: b"{}",
            },
        ]
    }

    const SALT: u64 = 0x5eed;

    /// A record sealed for a segment with [`SALT`].
    fn record(seq: u64, ops: &[Op<'_>]) -> Vec<u8> {
        let mut r = RecordBuf::new(seq);
        for op in ops {
            r.push(op);
        }
        let mut bytes = r.finish();
        seal(&mut bytes, SALT);
        bytes
    }

    fn read(bytes: &[u8]) -> Records<'_> {
        records(bytes, SALT, 0)
    }

    /// Appends one record to the log's current segment.
    fn append(log: &mut Log, seq: u64, ops: &[Op<'_>]) {
        let mut r = RecordBuf::new(seq);
        for op in ops {
            r.push(op);
        }
        let mut bytes = r.finish();
        log.seal(&mut bytes);
        log.append(&bytes).unwrap();
    }

    fn seqs_in(dir: &Path, first: u64) -> Vec<u64> {
        let bytes = std::fs::read(dir.join(format!("{first:020}.wal"))).unwrap();
        segment(&bytes, first).map(|r| r.seq).collect()
    }

    #[test]
    fn every_operation_reads_back_as_written() {
        let ops = sample();
        let mut log = record(41, &ops);
        log.extend(record(42, &ops[..1]));
        let read: Vec<_> = read(&log).collect();
        assert_eq!(read.len(), 2);
        assert_eq!((read[0].seq, read[1].seq), (41, 42));
        assert_eq!(read[0].ops().unwrap(), ops);
        assert_eq!(read[1].ops().unwrap(), ops[..1]);
    }

    #[test]
    fn a_group_that_changed_nothing_writes_nothing() {
        assert!(RecordBuf::new(1).finish().is_empty());
    }

    #[test]
    fn reading_stops_at_a_torn_or_corrupt_record() {
        let ops = sample();
        let first = record(1, &ops);
        let second = record(2, &ops);
        for cut in 1..second.len() {
            let mut log = first.clone();
            log.extend_from_slice(&second[..cut]);
            let mut read = read(&log);
            assert_eq!(read.by_ref().map(|r| r.seq).collect::<Vec<_>>(), [1]);
            assert_eq!(read.rest(), cut, "cut at {cut}");
        }
        let mut log = first.clone();
        log.extend_from_slice(&second);
        let last = log.len() - 1;
        log[last] ^= 1;
        assert_eq!(read(&log).count(), 1);
        // A zeroed tail (a file extended but never written) ends the records too.
        let mut log = first;
        log.extend_from_slice(&[0; 64]);
        assert_eq!(read(&log).count(), 1);
    }

    #[test]
    fn a_checksummed_record_with_unknown_operations_is_refused() {
        let mut r = RecordBuf::new(3);
        r.push(&sample()[0]);
        let mut bytes = r.finish();
        // Rewrite the tag and seal it, as a newer version's record would look.
        bytes[HEADER + 8] = 99;
        seal(&mut bytes, SALT);
        let read: Vec<_> = read(&bytes).collect();
        assert_eq!(read.len(), 1);
        assert!(read[0].ops().is_err());
    }

    /// A crash right after the writer started segment 5 (before anything was synced to it)
    /// leaves an empty `5.wal` beside a larger older segment, and replay resumes at group 5.
    #[test]
    fn starting_where_an_empty_segment_already_is_keeps_the_file_it_writes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!("{:020}.wal", 3)), [0u8; 40]).unwrap();
        std::fs::write(dir.path().join(format!("{:020}.wal", 5)), [0u8; 10]).unwrap();
        let mut log = Log::start(dir.path(), 5).unwrap();
        append(&mut log, 5, &sample());
        log.sync().unwrap();
        let left = segments(dir.path()).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, 5);
        assert_eq!(seqs_in(dir.path(), 5), [5]);
    }

    #[test]
    fn segments_are_reused_once_a_checkpoint_holds_their_groups() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!("{:020}.wal", 1)), b"old").unwrap();
        std::fs::write(dir.path().join(format!("{:020}.wal", 2)), b"older, longer").unwrap();
        let mut log = Log::start(dir.path(), 3).unwrap();
        let names = |dir: &Path| -> Vec<u64> {
            segments(dir).unwrap().into_iter().map(|(f, _)| f).collect()
        };
        assert_eq!(
            names(dir.path()),
            [3],
            "the largest file is reused, the rest deleted"
        );
        let big = vec![7u8; SEGMENT_BYTES as usize];
        let fill = |log: &mut Log, seq: u64| {
            append(
                log,
                seq,
                &[Op::Project {
                    id: "p",
                    json: &big,
                }],
            );
            log.sync().unwrap();
        };
        fill(&mut log, 3);
        log.make_room(0, 4).unwrap();
        assert_eq!(
            names(dir.path()),
            [3, 4],
            "a second file while the first is needed"
        );
        fill(&mut log, 4);
        log.make_room(2, 5).unwrap();
        assert_eq!(
            names(dir.path()),
            [3, 4],
            "segment 3 is not checkpointed: 4 grows"
        );
        append(&mut log, 5, &sample());
        log.make_room(3, 6).unwrap();
        assert_eq!(names(dir.path()), [4, 6], "segment 3's file now holds 6 on");
        append(&mut log, 6, &sample()[..1]);
        log.sync().unwrap();
        // Only the new record reads back: segment 3's record behind it has the old salt.
        assert_eq!(seqs_in(dir.path(), 6), [6]);
        assert_eq!(seqs_in(dir.path(), 4), [4, 5]);
    }

    #[test]
    fn a_segment_header_records_how_long_the_segment_before_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::start(dir.path(), 1).unwrap();
        let big = vec![7u8; SEGMENT_BYTES as usize];
        append(
            &mut log,
            1,
            &[Op::Project {
                id: "p",
                json: &big,
            }],
        );
        let written = log.written;
        log.make_room(0, 2).unwrap();
        append(&mut log, 2, &sample());
        log.sync().unwrap();
        let read = |first: u64| std::fs::read(dir.path().join(format!("{first:020}.wal"))).unwrap();
        let (first, second) = (read(1), read(2));
        let mut older = segment(&first, 1);
        assert_eq!(older.by_ref().count(), 1);
        assert_eq!(older.read() as u64, written);
        assert_eq!(
            older.previous(),
            None,
            "the first segment after a start has none"
        );
        assert_eq!(segment(&second, 2).previous(), Some(written));

        // A damaged header holds no records, rather than a wrong length.
        let mut damaged = second.clone();
        damaged[20] ^= 1;
        assert_eq!(segment(&damaged, 2).count(), 0);
    }

    #[test]
    fn an_older_segment_ends_early_only_if_groups_it_held_are_missing() {
        let end = 1000;
        // A segment holding groups 10..=19 in 1,000 record bytes, the next one starting at 20,
        // redb's checkpoint at 5.
        assert!(!ends_early(1000, end, Some(12), 20, 5), "read to its end");
        assert!(
            ends_early(100, end, Some(12), 20, 5),
            "stopped short, groups missing"
        );
        assert!(ends_early(0, end, None, 20, 5), "nothing readable at all");
        assert!(
            !ends_early(100, end, Some(19), 20, 5),
            "short, but its last group is the one before the next segment"
        );
        assert!(
            !ends_early(100, end, Some(12), 20, 19),
            "short, but redb's checkpoint holds all its groups (left over from a restart)"
        );
        assert!(
            ends_early(100, end, Some(12), 20, 18),
            "group 19 is neither read nor in redb"
        );
    }

    #[test]
    fn a_record_from_another_segment_or_older_than_the_segment_is_not_read() {
        let ops = sample();
        let mut log = record(7, &ops);
        log.extend(record(8, &ops));
        assert_eq!(records(&log, SALT, 0).count(), 2);
        assert_eq!(records(&log, SALT + 1, 0).count(), 0, "another salt");
        assert_eq!(records(&log, SALT, 8).count(), 0, "older than the segment");
        // Without its header, a file holds no records.
        assert_eq!(segment(&log, 0).count(), 0);
    }
}

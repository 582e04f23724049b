//! Taking erased rows out of redb's file: this module owns the handle every stage reads the
//! live database through ([`DbCell`]), the rewrite of the file after an erasure, and the
//! clean-up of what a crash in the middle of a rewrite leaves in the data directory.
//!
//! redb is copy-on-write: a deleted row stays in the pages its delete freed until redb reuses
//! them, which may be never. Overwriting the free pages from inside redb (filling a scratch
//! table) cannot be done exactly through its public API, and every overshoot grew the file,
//! compounding over erasures (0.5 MB to 440 MB over seven). Copying the live tables into a
//! fresh file holds only live rows by construction, and leaves the file compact. It costs a
//! pass over the live data, which is paid only for an erasure.
//!
//! The swap keeps `fleety.redb` naming a whole database at every moment: the old file gets a
//! second name first (`fleety.redb.old`), the fresh one is renamed over `fleety.redb`, and the
//! old one is overwritten with zeros and removed once no reader holds it.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write as _;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use fleety_actors::store::{StoreError, StoreResult};
use redb::{
    Database, Durability, Key, ReadableDatabase, ReadableTable, TableDefinition, TableHandle,
    TypeName, Value,
};

use super::tables::emails::{EMAILS_BY_PROJECT, EMAILS_BY_TICKET};
use super::tables::*;

/// The live database, replaced whole by a rewrite. Readers and writers take the current one
/// for each operation; one that began before a swap finishes on the old file, which is kept
/// until it lets go.
pub(super) struct DbCell {
    current: RwLock<Arc<Database>>,
    /// Held by the applier around each commit and by a rewrite from its copy to its swap, so
    /// no commit lands in the old file after the copy has read it.
    commits: Mutex<()>,
}

impl DbCell {
    pub(super) fn new(db: Database) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(db)),
            commits: Mutex::new(()),
        })
    }

    pub(super) fn get(&self) -> Arc<Database> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The right to commit to the current database until the guard drops.
    pub(super) fn commits(&self) -> MutexGuard<'_, ()> {
        self.commits.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn swap(&self, db: Database) -> Arc<Database> {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *current, Arc::new(db))
    }
}

/// Where a rewrite builds the fresh file before it takes the database's name.
fn fresh_path(path: &Path) -> PathBuf {
    sibling(path, "rewrite")
}

/// The old file's second name, until it is zeroed and removed.
fn old_path(path: &Path) -> PathBuf {
    sibling(path, "old")
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

/// How long a rewrite waits for readers of the old file to finish before it reports the store
/// busy. Reads are short: each is one redb read transaction on the blocking pool.
const READERS_LEAVE_WITHIN: Duration = Duration::from_secs(60);

/// Rewrites `path` (the database `cell` holds) with only its live rows, then zeroes and removes
/// the old file. The caller makes sure no write is decided meanwhile: the writer thread runs
/// this itself, after the applier has checkpointed every group.
pub(super) fn rewrite(cell: &DbCell, path: &Path) -> StoreResult<()> {
    let fresh_path = fresh_path(path);
    let old_path = old_path(path);
    remove_if_present(&fresh_path)?;
    discard_old(path, &old_path)?;
    let old = {
        let _commits = cell.commits();
        let old = cell.get();
        let fresh = Database::create(&fresh_path).map_err(internal)?;
        copy_tables(&old, &fresh)?;
        // From here `path` names the old file or the fresh one, each whole.
        std::fs::hard_link(path, &old_path).map_err(internal)?;
        std::fs::rename(&fresh_path, path).map_err(internal)?;
        sync_dir(path)?;
        drop(cell.swap(fresh));
        old
    };
    let deadline = Instant::now() + READERS_LEAVE_WITHIN;
    while Arc::strong_count(&old) > 1 {
        if Instant::now() >= deadline {
            // The next rewrite, or the next start, finishes the old file.
            return Err(StoreError::Unavailable(
                "a reader still holds the data file an erasure replaced".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Closing writes redb's last state into the old file; it is zeroed after.
    drop(old);
    zero_and_remove(&old_path)?;
    sync_dir(path)
}

/// Finishes what a rewrite cut short by a crash, before the database is opened: a fresh file
/// never renamed is incomplete, and an old file is zeroed and removed unless it is still the
/// database itself (the crash came between the two renames' first and second name).
pub(super) fn recover_files(path: &Path) -> std::io::Result<()> {
    let fresh = fresh_path(path);
    if fresh.exists() {
        std::fs::remove_file(&fresh)?;
    }
    let old = old_path(path);
    if old.exists() {
        discard_old(path, &old).map_err(|e| std::io::Error::other(e.to_string()))?;
        sync_dir(path).map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    Ok(())
}

/// Removes a leftover old file: only its second name when it is the database itself, else
/// its bytes too.
fn discard_old(path: &Path, old: &Path) -> StoreResult<()> {
    let Ok(old_meta) = std::fs::metadata(old) else {
        return Ok(());
    };
    if same_file(&old_meta, path) {
        std::fs::remove_file(old).map_err(internal)
    } else {
        zero_and_remove(old)
    }
}

#[cfg(unix)]
fn same_file(meta: &std::fs::Metadata, other: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(other).is_ok_and(|o| o.dev() == meta.dev() && o.ino() == meta.ino())
}

#[cfg(not(unix))]
fn same_file(_meta: &std::fs::Metadata, _other: &Path) -> bool {
    false
}

/// Overwrites a file with zeros and syncs that before removing it, so its blocks no longer
/// hold what it did once the file system frees them.
fn zero_and_remove(path: &Path) -> StoreResult<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(internal)?;
    let len = file.metadata().map_err(internal)?.len();
    let zeros = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n]).map_err(internal)?;
        left -= n as u64;
    }
    file.sync_data().map_err(internal)?;
    drop(file);
    std::fs::remove_file(path).map_err(internal)
}

fn remove_if_present(path: &Path) -> StoreResult<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(internal(e)),
    }
}

/// Makes renames and removals in the data directory durable.
fn sync_dir(path: &Path) -> StoreResult<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(internal)
}

/// A table's keys or values as their stored bytes, ordered and named as `T`, so one generic
/// copy serves every table without decoding a row.
struct Raw<T>(PhantomData<T>);

impl<T> fmt::Debug for Raw<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Raw")
    }
}

impl<T: Value + 'static> Value for Raw<T> {
    type SelfType<'a>
        = &'a [u8]
    where
        Self: 'a;
    type AsBytes<'a>
        = &'a [u8]
    where
        Self: 'a;

    fn fixed_width() -> Option<usize> {
        T::fixed_width()
    }

    fn from_bytes<'a>(data: &'a [u8]) -> &'a [u8]
    where
        Self: 'a,
    {
        data
    }

    fn as_bytes<'a, 'b: 'a>(value: &'a &'b [u8]) -> &'a [u8]
    where
        Self: 'b,
    {
        value
    }

    fn type_name() -> TypeName {
        T::type_name()
    }
}

impl<T: Key + 'static> Key for Raw<T> {
    fn compare(data1: &[u8], data2: &[u8]) -> std::cmp::Ordering {
        T::compare(data1, data2)
    }
}

/// Bytes copied between commits of the fresh file: bounds the pages a copy holds dirty.
const COPY_COMMIT_BYTES: usize = 64 << 20;

/// Copies one table into `to`, committing every [`COPY_COMMIT_BYTES`]. A table the old file
/// lacks is skipped: the store opens (and so creates) every table at start.
fn copy_table<K: Key + 'static, V: Value + 'static>(
    from: &redb::ReadTransaction,
    to: &Database,
    definition: TableDefinition<K, V>,
) -> StoreResult<()> {
    let raw: TableDefinition<Raw<K>, Raw<V>> = TableDefinition::new(definition.name());
    let source = match from.open_table(raw) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(internal(e)),
    };
    let mut rows = source.iter().map_err(internal)?.peekable();
    loop {
        let mut txn = to.begin_write().map_err(internal)?;
        // The last commit of the copy is made durable once, by the caller.
        txn.set_durability(Durability::None).map_err(internal)?;
        let mut bytes = 0;
        {
            let mut table = txn.open_table(raw).map_err(internal)?;
            while bytes < COPY_COMMIT_BYTES {
                let Some(row) = rows.next() else { break };
                let (key, value) = row.map_err(internal)?;
                table.insert(key.value(), value.value()).map_err(internal)?;
                bytes += key.value().len() + value.value().len();
            }
        }
        txn.commit().map_err(internal)?;
        if rows.peek().is_none() {
            return Ok(());
        }
    }
}

/// Copies every table of `from` into `to`, durably. A table this build does not know would be
/// lost by the swap, so one refuses the rewrite instead.
fn copy_tables(from: &Database, to: &Database) -> StoreResult<()> {
    let read = from.begin_read().map_err(internal)?;
    let present: BTreeSet<String> = read
        .list_tables()
        .map_err(internal)?
        .map(|t| t.name().to_string())
        .collect();
    let known = known_tables();
    // "scrub" held the zeros an earlier version overwrote free pages with, and is left only
    // by a crash during that: nothing in it is worth keeping.
    if let Some(unknown) = present
        .iter()
        .find(|name| !known.contains(*name) && name.as_str() != "scrub")
    {
        return Err(internal(format!(
            "the data file has a table this version does not know ({unknown}); not rewritten"
        )));
    }
    for table in all_tables() {
        copy_any(&read, to, table)?;
    }
    let txn = to.begin_write().map_err(internal)?;
    txn.commit().map_err(internal)
}

/// One table of any of the store's types.
enum AnyTable {
    Bytes(TableDefinition<'static, &'static str, &'static [u8]>),
    Pair(TableDefinition<'static, (&'static str, &'static str), &'static [u8]>),
    Triple(TableDefinition<'static, (&'static str, &'static str, &'static str), &'static [u8]>),
    Numbered(TableDefinition<'static, (&'static str, &'static str, u64), &'static [u8]>),
    Timed(TableDefinition<'static, (&'static str, i64, &'static str), &'static [u8]>),
    TimedSlug(TableDefinition<'static, (&'static str, i64, &'static str), &'static str>),
    DeliveryDue(TableDefinition<'static, (i64, &'static str, &'static str, &'static str), ()>),
    PairTimedIndex(TableDefinition<'static, (&'static str, &'static str, i64, &'static str), ()>),
    EmailDue(TableDefinition<'static, (i64, &'static str), ()>),
    MailDue(TableDefinition<'static, (i64, &'static str, &'static str), ()>),
    TimedIndex(TableDefinition<'static, (&'static str, i64, &'static str), ()>),
    Meta(TableDefinition<'static, &'static str, u64>),
}

impl AnyTable {
    fn name(&self) -> String {
        match self {
            AnyTable::Bytes(t) => t.name().to_string(),
            AnyTable::Pair(t) => t.name().to_string(),
            AnyTable::Triple(t) => t.name().to_string(),
            AnyTable::Numbered(t) => t.name().to_string(),
            AnyTable::Timed(t) => t.name().to_string(),
            AnyTable::TimedSlug(t) => t.name().to_string(),
            AnyTable::DeliveryDue(t) => t.name().to_string(),
            AnyTable::PairTimedIndex(t) => t.name().to_string(),
            AnyTable::EmailDue(t) => t.name().to_string(),
            AnyTable::MailDue(t) => t.name().to_string(),
            AnyTable::TimedIndex(t) => t.name().to_string(),
            AnyTable::Meta(t) => t.name().to_string(),
        }
    }
}

fn copy_any(from: &redb::ReadTransaction, to: &Database, table: AnyTable) -> StoreResult<()> {
    match table {
        AnyTable::Bytes(t) => copy_table(from, to, t),
        AnyTable::Pair(t) => copy_table(from, to, t),
        AnyTable::Triple(t) => copy_table(from, to, t),
        AnyTable::Numbered(t) => copy_table(from, to, t),
        AnyTable::Timed(t) => copy_table(from, to, t),
        AnyTable::TimedSlug(t) => copy_table(from, to, t),
        AnyTable::DeliveryDue(t) => copy_table(from, to, t),
        AnyTable::PairTimedIndex(t) => copy_table(from, to, t),
        AnyTable::EmailDue(t) => copy_table(from, to, t),
        AnyTable::MailDue(t) => copy_table(from, to, t),
        AnyTable::TimedIndex(t) => copy_table(from, to, t),
        AnyTable::Meta(t) => copy_table(from, to, t),
    }
}

/// The store's tables; a test checks that every table the store creates is here.
fn all_tables() -> Vec<AnyTable> {
    use AnyTable::*;
    vec![
        Bytes(PROJECTS),
        Pair(TICKETS),
        TimedSlug(TICKETS_BY_TIME),
        Numbered(MESSAGES),
        Triple(READ_CURSORS),
        Numbered(NOTES),
        Numbered(ACTIVITY),
        Numbered(CHAT_TURNS),
        Timed(CHAT_CONVERSATIONS),
        Pair(ARTICLES),
        Pair(WEBHOOKS),
        Triple(DELIVERIES),
        DeliveryDue(DELIVERIES_DUE),
        Pair(UNANSWERED),
        Pair(MEMBERS),
        Pair(MEMBER_EMAILS),
        Pair(API_TOKENS),
        Pair(MEMBER_TOTP),
        Triple(MEMBER_SESSIONS),
        Pair(MEMBER_LINKS),
        Pair(CANNED),
        Timed(AUDIT),
        Bytes(EMAILS),
        EmailDue(EMAILS_DUE),
        TimedIndex(EMAILS_BY_PROJECT),
        PairTimedIndex(EMAILS_BY_TICKET),
        Pair(VISITOR_MAILS),
        MailDue(VISITOR_MAILS_DUE),
        Pair(NOTIFICATION_PREFS),
        Pair(CONTACTS),
        PairTimedIndex(CONTACT_TICKETS),
        Triple(INBOUND_MAIL),
        Pair(ERASURES),
        Pair(CONTACT_ERASURES),
        Meta(META),
    ]
}

fn known_tables() -> BTreeSet<String> {
    all_tables().iter().map(AnyTable::name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::pipeline::Write;
    use crate::store::embedded::tests::{project, ticket};
    use crate::store::embedded::EmbeddedStore;
    use fleety_actors::clock::now_millis;
    use fleety_actors::domain::*;
    use fleety_actors::store::*;
    use fleety_actors::MessageId;

    /// Every file under `dir` whose bytes hold `needle`.
    fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(files_holding(&path, needle));
            } else {
                let bytes = std::fs::read(&path).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path);
                }
            }
        }
        found
    }

    async fn ticket_with_words(store: &EmbeddedStore, p: &Project, i: usize) -> Ticket {
        let mut t = ticket(p);
        t.slug = Slug::parse(&format!("swift-bear-{i:03}")).unwrap();
        t.id = uuid::Uuid::new_v4();
        store.create_ticket(&t, &[]).await.unwrap();
        let mut last = None;
        let mut writes = Vec::new();
        for m in 0..20 {
            let id = MessageId::next(last, now_millis());
            last = Some(id);
            // Long enough that the messages take many pages, as a real conversation's do.
            let text = format!("marker-{i:03}-{m:02} {}", "words ".repeat(300));
            writes.push(TicketWrite::Message(Message {
                id,
                author: Participant::User,
                content: MessageBody::parse(&text).unwrap(),
                timestamp: id.timestamp(),
                idempotency_key: None,
                agent: None,
            }));
        }
        let batch = Write::Ticket {
            project: p.id.clone(),
            slug: t.slug.clone(),
            writes,
        };
        store.write_untimed(batch).await.unwrap();
        t
    }

    /// The bug this module replaced: overwriting free pages from inside redb grew the file at
    /// every erasure, 0.5 MB to 440 MB over seven.
    #[tokio::test]
    async fn erasures_in_a_row_leave_no_erased_words_and_do_not_grow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let p = project();
        store.create_project(&p).await.unwrap();
        let mut tickets = Vec::new();
        for i in 0..30 {
            tickets.push(ticket_with_words(&store, &p, i).await);
        }
        let file = dir.path().join("fleety.redb");
        let mut first = None;
        for (i, t) in tickets.iter().enumerate().take(22) {
            assert!(store.erase_ticket(&p.id, &t.slug).await.unwrap());
            let len = std::fs::metadata(&file).unwrap().len();
            let first = *first.get_or_insert(len);
            assert!(
                len <= first * 2,
                "erasure {i} left the file at {len} bytes, after {first} at the first"
            );
            let marker = format!("marker-{i:03}-");
            let left = files_holding(dir.path(), marker.as_bytes());
            assert!(left.is_empty(), "ticket {i}'s words are still in {left:?}");
        }
        // What was not erased is whole.
        for t in &tickets[22..] {
            let messages = store
                .list_messages(&p.id, &t.slug, MessageRange::all())
                .await
                .unwrap();
            assert_eq!(messages.len(), 20);
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.ends_with(".old") || n.ends_with(".rewrite")),
            "{names:?}"
        );
        // Reopened, the rewritten file serves the same.
        drop(store);
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert!(store
            .get_ticket(&p.id, &tickets[29].slug)
            .await
            .unwrap()
            .is_some());
        assert!(store
            .get_ticket(&p.id, &tickets[0].slug)
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn every_table_the_store_makes_is_one_a_rewrite_keeps() {
        let dir = tempfile::tempdir().unwrap();
        drop(EmbeddedStore::open(dir.path()).unwrap());
        let db = Database::open(dir.path().join("fleety.redb")).unwrap();
        let read = db.begin_read().unwrap();
        let made: BTreeSet<String> = read
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .collect();
        assert_eq!(made, known_tables());
    }

    #[test]
    fn a_crash_mid_rewrite_leaves_the_database_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleety.redb");
        std::fs::write(&path, b"the database").unwrap();

        // Cut short while copying: the fresh file goes, the database stays.
        std::fs::write(fresh_path(&path), b"half a copy").unwrap();
        // Cut short between the two names: the old name is the database itself.
        std::fs::hard_link(&path, old_path(&path)).unwrap();
        recover_files(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"the database");
        assert!(!fresh_path(&path).exists() && !old_path(&path).exists());

        // Cut short after the swap: the old file is another, and goes.
        std::fs::write(old_path(&path), b"erased words").unwrap();
        recover_files(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"the database");
        assert!(!old_path(&path).exists());
    }
}

//! `MemoryStore`: the storage port held in memory, for tests. It passes the conformance suite
//! like the real backends, so the actors can be tested beside their code without a disk.
//!
//! It can also hold ticket batches at a gate (see [`MemoryStore::hold_batches`]): a test then
//! decides when each batch lands, whether it fails, or whether it is lost without an answer,
//! and watches what the ticket actor does meanwhile. Chat transcript writes can be held the
//! same way ([`MemoryStore::hold_transcripts`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use uuid::Uuid;

use super::*;
use crate::audit::AuditCursor;
use crate::canned::{CannedConflict, CannedReply};
use crate::contact::{order_key, Contact, ContactErasure, ContactPage, ContactQuery};
use crate::domain::{
    Activity, ChatConversation, ChatTurn, ChatUsage, Note, OutcomeCounts, Participant,
};
use crate::member::{ApiToken, Member, MemberLink, MemberSession, MemberTotp};
use crate::webhook::{Delivery, Endpoint};

#[derive(Default)]
pub struct MemoryStore {
    data: Mutex<Data>,
    gate: Gate,
    transcripts: TranscriptGate,
    claims: Claims,
}

/// Holds chat transcript writes until a test lets each go.
#[derive(Default)]
struct TranscriptGate {
    state: Mutex<TranscriptGateState>,
    changed: tokio::sync::Notify,
}

#[derive(Default)]
struct TranscriptGateState {
    closed: bool,
    /// The writes waiting, oldest first: each goes on when its sender is used or dropped.
    held: VecDeque<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Default)]
struct Data {
    projects: HashMap<ProjectId, Project>,
    tickets: HashMap<(ProjectId, Slug), TicketRows>,
    turns: HashMap<(ProjectId, String), BTreeMap<MessageId, ChatTurn>>,
    conversations: BTreeMap<(ProjectId, DateTime<Utc>, String), ChatConversation>,
    articles: HashMap<(ProjectId, Uuid), Article>,
    endpoints: BTreeMap<(ProjectId, Uuid), Endpoint>,
    deliveries: BTreeMap<(ProjectId, Uuid, String), Delivery>,
    unanswered: HashMap<ProjectId, HashMap<String, UnansweredQuestion>>,
    member_links: BTreeMap<(ProjectId, String), MemberLink>,
    members: BTreeMap<(ProjectId, Uuid), Member>,
    member_sessions: BTreeMap<(ProjectId, Uuid, String), MemberSession>,
    api_tokens: BTreeMap<(ProjectId, Uuid), ApiToken>,
    member_totp: BTreeMap<(ProjectId, Uuid), MemberTotp>,
    canned: BTreeMap<(ProjectId, Uuid), CannedReply>,
    audit: BTreeMap<(ProjectId, AuditCursor), AuditRecord>,
    emails: BTreeMap<String, crate::email::Email>,
    visitor_mails: BTreeMap<(ProjectId, Slug), VisitorMail>,
    notification_prefs: BTreeMap<(ProjectId, Uuid), NotificationPrefs>,
    /// By project and [`order_key`].
    contacts: BTreeMap<(ProjectId, String), Contact>,
    inbound_mail: HashMap<(ProjectId, Slug, String), crate::inbound_mail::InboundMail>,
    erasures: BTreeMap<(ProjectId, Slug), Erasure>,
    contact_erasures: BTreeMap<(ProjectId, Uuid), ContactErasure>,
}

impl Data {
    /// Writes the record pending for this change, under the same lock as the change.
    fn audit(&mut self) {
        if let Some(r) = crate::audit::take() {
            self.audit.insert((r.project_id.clone(), r.cursor()), r);
        }
    }

    /// Whether the ticket an email is about is stored: an email of an erased ticket is not.
    fn ticket_stored(&self, e: &crate::email::Email) -> bool {
        e.ticket.as_ref().is_none_or(|s| {
            self.tickets
                .contains_key(&(e.project_id.clone(), s.clone()))
        })
    }
}

struct TicketRows {
    ticket: Ticket,
    messages: BTreeMap<MessageId, Message>,
    cursors: BTreeMap<Participant, MessageId>,
    notes: BTreeMap<MessageId, Note>,
    activity: BTreeMap<MessageId, Activity>,
}

type Held = (ProjectId, Slug, Vec<TicketWrite>, Done);

#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: tokio::sync::Notify,
}

#[derive(Default)]
struct GateState {
    closed: bool,
    held: VecDeque<Held>,
    /// The size of every batch submitted, in order.
    sizes: Vec<usize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryStore {
    pub fn new() -> Arc<MemoryStore> {
        Arc::default()
    }

    /// From now on, submitted batches wait at the gate until [`release`](Self::release),
    /// [`fail`](Self::fail) or [`lose`](Self::lose) lets the oldest one go.
    pub fn hold_batches(&self) {
        lock(&self.gate.state).closed = true;
    }

    /// Batches waiting at the gate.
    pub fn held(&self) -> usize {
        lock(&self.gate.state).held.len()
    }

    /// Waits until at least `n` batches are held.
    pub async fn holding(&self, n: usize) {
        loop {
            let changed = self.gate.changed.notified();
            let mut changed = std::pin::pin!(changed);
            // Registered before the look, so a batch held in between still wakes us.
            changed.as_mut().enable();
            if self.held() >= n {
                return;
            }
            changed.await;
        }
    }

    /// The size of every batch submitted so far, in order.
    pub fn batch_sizes(&self) -> Vec<usize> {
        lock(&self.gate.state).sizes.clone()
    }

    fn take_oldest(&self) -> Held {
        lock(&self.gate.state)
            .held
            .pop_front()
            .expect("no batch is held at the gate")
    }

    /// Lets the oldest held batch land.
    pub fn release(&self) {
        let (project, slug, writes, done) = self.take_oldest();
        done(self.apply(&project, &slug, &writes));
    }

    /// Fails the oldest held batch without writing any of it.
    pub fn fail(&self) {
        let (.., done) = self.take_oldest();
        done(Err(StoreError::Unavailable("failed by the test".into())));
    }

    /// Drops the oldest held batch without a word, as a store whose writer died would.
    pub fn lose(&self) {
        drop(self.take_oldest());
    }

    /// From now on, chat transcript writes wait until [`release_transcript`]
    /// (Self::release_transcript) lets the oldest one go.
    pub fn hold_transcripts(&self) {
        lock(&self.transcripts.state).closed = true;
    }

    /// Waits until at least `n` transcript writes are held.
    pub async fn holding_transcripts(&self, n: usize) {
        loop {
            let changed = self.transcripts.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if lock(&self.transcripts.state).held.len() >= n {
                return;
            }
            changed.await;
        }
    }

    /// Lets the oldest held transcript write land.
    pub fn release_transcript(&self) {
        let next = lock(&self.transcripts.state).held.pop_front();
        let _ = next.expect("no transcript write is held").send(());
    }

    /// One ticket's writes, all or none.
    fn apply(&self, project: &ProjectId, slug: &Slug, writes: &[TicketWrite]) -> StoreResult<()> {
        let mut data = lock(&self.data);
        let data = &mut *data;
        let rows = data
            .tickets
            .get_mut(&(project.clone(), slug.clone()))
            .ok_or(StoreError::NotFound)?;
        for write in writes {
            match write {
                TicketWrite::Message(m) => {
                    rows.messages.insert(m.id, m.clone());
                }
                TicketWrite::Ticket(t) => {
                    if t.updated_at >= rows.ticket.updated_at {
                        rows.ticket = t.clone();
                    }
                }
                TicketWrite::ReadCursor { reader, up_to } => {
                    let cursor = rows.cursors.entry(*reader).or_insert(*up_to);
                    *cursor = (*cursor).max(*up_to);
                }
                TicketWrite::Note(n) => {
                    rows.notes.insert(n.id, n.clone());
                }
                TicketWrite::Activity(a) => {
                    rows.activity.insert(a.id, a.clone());
                }
                TicketWrite::Delivery(d) => {
                    data.deliveries.insert(delivery_key(d), d.clone());
                }
                TicketWrite::Audit(r) => {
                    data.audit
                        .insert((r.project_id.clone(), r.cursor()), r.clone());
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ProjectStore for MemoryStore {
    async fn create_project(&self, project: &Project) -> StoreResult<()> {
        let mut data = lock(&self.data);
        if data.projects.contains_key(&project.id) {
            return Err(StoreError::Conflict);
        }
        data.projects.insert(project.id.clone(), project.clone());
        Ok(())
    }

    async fn get_project(&self, id: &ProjectId) -> StoreResult<Option<Project>> {
        Ok(lock(&self.data).projects.get(id).cloned())
    }

    async fn update_project(&self, project: &Project) -> StoreResult<()> {
        let mut data = lock(&self.data);
        match data.projects.get_mut(&project.id) {
            Some(stored) => {
                *stored = project.clone();
                data.audit();
                Ok(())
            }
            None => Err(StoreError::NotFound),
        }
    }

    async fn list_projects(&self) -> StoreResult<Vec<Project>> {
        Ok(lock(&self.data).projects.values().cloned().collect())
    }
}

#[async_trait]
impl TicketStore for MemoryStore {
    async fn create_ticket_with_history(
        &self,
        ticket: &Ticket,
        messages: &[Message],
        deliveries: &[Delivery],
    ) -> StoreResult<()> {
        let mut data = lock(&self.data);
        let key = (ticket.project_id.clone(), ticket.slug.clone());
        if data.tickets.contains_key(&key) {
            return Err(StoreError::Conflict);
        }
        let rows = TicketRows {
            ticket: ticket.clone(),
            messages: messages.iter().map(|m| (m.id, m.clone())).collect(),
            cursors: BTreeMap::new(),
            notes: BTreeMap::new(),
            activity: BTreeMap::new(),
        };
        data.tickets.insert(key, rows);
        for d in deliveries {
            data.deliveries.insert(delivery_key(d), d.clone());
        }
        Ok(())
    }

    async fn get_ticket(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Option<Ticket>> {
        let data = lock(&self.data);
        let rows = data.tickets.get(&(project.clone(), slug.clone()));
        Ok(rows.map(|r| r.ticket.clone()))
    }

    async fn list_tickets(
        &self,
        project: &ProjectId,
        query: &TicketQuery,
    ) -> StoreResult<TicketPage> {
        let limit = query.limit.clamp(1, 100);
        let data = lock(&self.data);
        let mut tickets: Vec<&Ticket> = data
            .tickets
            .values()
            .map(|r| &r.ticket)
            .filter(|t| &t.project_id == project)
            .filter(|t| {
                query
                    .after
                    .as_ref()
                    .is_none_or(|c| (t.created_at, &t.slug) < (c.created_at, &c.slug))
            })
            .collect();
        tickets.sort_by(|a, b| (b.created_at, &b.slug).cmp(&(a.created_at, &a.slug)));
        // As the other backends scan: a search looks at SEARCH_SCAN tickets per page at most.
        let scan = query.scan_limit();
        let mut page = Vec::new();
        let mut stopped_at = None;
        for (examined, t) in tickets.into_iter().enumerate() {
            if examined == scan {
                break;
            }
            if query.matches(t) {
                page.push(t.clone());
                if page.len() > limit {
                    break;
                }
            }
            stopped_at = (examined + 1 == scan).then(|| TicketCursor {
                created_at: t.created_at,
                slug: t.slug.clone(),
            });
        }
        Ok(TicketPage::scanned(page, limit, stopped_at))
    }

    async fn list_messages(
        &self,
        project: &ProjectId,
        slug: &Slug,
        range: MessageRange,
    ) -> StoreResult<Vec<Message>> {
        let data = lock(&self.data);
        let Some(rows) = data.tickets.get(&(project.clone(), slug.clone())) else {
            return Ok(Vec::new());
        };
        let within = rows
            .messages
            .values()
            .filter(|m| range.after.is_none_or(|a| m.id > a))
            .filter(|m| range.before.is_none_or(|b| m.id < b));
        Ok(if range.newest {
            let mut newest: Vec<Message> = within.rev().take(range.limit).cloned().collect();
            newest.reverse();
            newest
        } else {
            within.take(range.limit).cloned().collect()
        })
    }

    async fn read_cursors(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Vec<ReadCursor>> {
        let data = lock(&self.data);
        let Some(rows) = data.tickets.get(&(project.clone(), slug.clone())) else {
            return Ok(Vec::new());
        };
        Ok(rows
            .cursors
            .iter()
            .map(|(&reader, &up_to)| ReadCursor { reader, up_to })
            .collect())
    }

    async fn list_notes(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Vec<Note>> {
        let data = lock(&self.data);
        let rows = data.tickets.get(&(project.clone(), slug.clone()));
        Ok(rows.map_or_else(Vec::new, |r| r.notes.values().cloned().collect()))
    }

    async fn list_activity(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Vec<Activity>> {
        let data = lock(&self.data);
        let rows = data.tickets.get(&(project.clone(), slug.clone()));
        Ok(rows.map_or_else(Vec::new, |r| r.activity.values().cloned().collect()))
    }

    fn submit(
        self: Arc<Self>,
        project: ProjectId,
        slug: Slug,
        writes: Vec<TicketWrite>,
        done: Done,
    ) {
        let mut gate = lock(&self.gate.state);
        gate.sizes.push(writes.len());
        if gate.closed {
            gate.held.push_back((project, slug, writes, done));
            drop(gate);
            self.gate.changed.notify_waiters();
            return;
        }
        drop(gate);
        done(self.apply(&project, &slug, &writes));
    }

    async fn erase_ticket(&self, project: &ProjectId, slug: &Slug) -> StoreResult<bool> {
        let mut data = lock(&self.data);
        let rows = data.tickets.remove(&(project.clone(), slug.clone()));
        if let Some(session) = rows.as_ref().and_then(|r| r.ticket.session_id.clone()) {
            // The session's conversation row stays: it holds counts for reporting, no words.
            data.turns.remove(&(project.clone(), session));
        }
        data.deliveries
            .retain(|(p, _, _), d| !(p == project && d.concerns_ticket(slug.as_str())));
        data.emails
            .retain(|_, e| !(&e.project_id == project && e.ticket.as_ref() == Some(slug)));
        for ((p, _), record) in data.audit.iter_mut() {
            if p == project {
                crate::audit::redact_ticket(record, slug.as_str());
            }
        }
        Ok(rows.is_some())
    }

    async fn put_erasure(&self, erasure: &Erasure) -> StoreResult<()> {
        let key = (erasure.project_id.clone(), erasure.slug.clone());
        lock(&self.data).erasures.insert(key, erasure.clone());
        Ok(())
    }

    async fn delete_erasure(&self, project: &ProjectId, slug: &Slug) -> StoreResult<()> {
        lock(&self.data)
            .erasures
            .remove(&(project.clone(), slug.clone()));
        Ok(())
    }

    async fn pending_erasures(&self) -> StoreResult<Vec<Erasure>> {
        Ok(lock(&self.data).erasures.values().cloned().collect())
    }
}

#[async_trait]
impl ChatStore for MemoryStore {
    async fn append_chat_turns(
        &self,
        project: &ProjectId,
        session: &str,
        turns: &[ChatTurn],
    ) -> StoreResult<()> {
        let held = {
            let mut gate = lock(&self.transcripts.state);
            gate.closed.then(|| {
                let (tx, rx) = tokio::sync::oneshot::channel();
                gate.held.push_back(tx);
                rx
            })
        };
        if let Some(held) = held {
            self.transcripts.changed.notify_waiters();
            let _ = held.await;
        }
        let mut data = lock(&self.data);
        let transcript = data
            .turns
            .entry((project.clone(), session.to_owned()))
            .or_default();
        for turn in turns {
            let mut turn = turn.clone();
            if turn.feedback.is_none() {
                turn.feedback = transcript.get(&turn.id).and_then(|t| t.feedback);
            }
            transcript.insert(turn.id, turn);
        }
        Ok(())
    }

    async fn list_chat_turns(
        &self,
        project: &ProjectId,
        session: &str,
        limit: usize,
    ) -> StoreResult<Vec<ChatTurn>> {
        let data = lock(&self.data);
        let Some(transcript) = data.turns.get(&(project.clone(), session.to_owned())) else {
            return Ok(Vec::new());
        };
        let mut newest: Vec<ChatTurn> = transcript.values().rev().take(limit).cloned().collect();
        newest.reverse();
        Ok(newest)
    }

    async fn chat_session_usage(
        &self,
        project: &ProjectId,
        session: &str,
    ) -> StoreResult<ChatUsage> {
        let data = lock(&self.data);
        let mut usage = ChatUsage::default();
        if let Some(transcript) = data.turns.get(&(project.clone(), session.to_owned())) {
            for turn in transcript.values() {
                usage.add(turn);
            }
        }
        Ok(usage)
    }

    async fn chat_turn(
        &self,
        project: &ProjectId,
        session: &str,
        id: MessageId,
    ) -> StoreResult<Option<ChatTurn>> {
        let data = lock(&self.data);
        let transcript = data.turns.get(&(project.clone(), session.to_owned()));
        Ok(transcript.and_then(|t| t.get(&id)).cloned())
    }

    async fn put_chat_conversation(
        &self,
        project: &ProjectId,
        conversation: &ChatConversation,
    ) -> StoreResult<()> {
        let key = (
            project.clone(),
            conversation.started_at,
            conversation.session.clone(),
        );
        lock(&self.data)
            .conversations
            .insert(key, conversation.clone());
        Ok(())
    }

    async fn count_chat_outcomes(
        &self,
        project: &ProjectId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
        ends_after: chrono::Duration,
    ) -> StoreResult<OutcomeCounts> {
        let data = lock(&self.data);
        let mut counts = OutcomeCounts::default();
        if from < to {
            let range =
                (project.clone(), from, String::new())..(project.clone(), to, String::new());
            for c in data.conversations.range(range).map(|(_, c)| c) {
                counts.add(c, now, ends_after);
            }
        }
        Ok(counts)
    }
}

#[async_trait]
impl KbStore for MemoryStore {
    async fn put_article(&self, article: &Article) -> StoreResult<()> {
        let key = (article.project_id.clone(), article.id);
        let mut data = lock(&self.data);
        data.articles.insert(key, article.clone());
        data.audit();
        Ok(())
    }

    async fn delete_article(&self, project: &ProjectId, id: Uuid) -> StoreResult<()> {
        let mut data = lock(&self.data);
        match data.articles.remove(&(project.clone(), id)) {
            Some(_) => {
                data.audit();
                Ok(())
            }
            None => Err(StoreError::NotFound),
        }
    }

    async fn list_articles(&self, project: &ProjectId) -> StoreResult<Vec<Article>> {
        let data = lock(&self.data);
        let articles = data.articles.values().filter(|a| &a.project_id == project);
        Ok(articles.cloned().collect())
    }
}

#[async_trait]
impl UnansweredStore for MemoryStore {
    async fn record_unanswered(&self, project: &ProjectId, asked: &Asked) -> StoreResult<()> {
        let mut data = lock(&self.data);
        let entries = data.unanswered.entry(project.clone()).or_default();
        let entry = asked.apply(project, entries.remove(&asked.id));
        entries.insert(entry.id.clone(), entry);
        let all: Vec<UnansweredQuestion> = entries.values().cloned().collect();
        for id in crate::unanswered::overflow(&all) {
            entries.remove(&id);
        }
        Ok(())
    }

    async fn list_unanswered(
        &self,
        project: &ProjectId,
        limit: usize,
    ) -> StoreResult<Vec<UnansweredQuestion>> {
        let data = lock(&self.data);
        let mut all: Vec<UnansweredQuestion> = data
            .unanswered
            .get(project)
            .map(|e| e.values().cloned().collect())
            .unwrap_or_default();
        crate::unanswered::sort(&mut all);
        all.truncate(limit);
        Ok(all)
    }

    async fn dismiss_unanswered(&self, project: &ProjectId, id: &str) -> StoreResult<()> {
        let mut data = lock(&self.data);
        match data.unanswered.get_mut(project).and_then(|e| e.remove(id)) {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound),
        }
    }
}

fn delivery_key(d: &Delivery) -> (ProjectId, Uuid, String) {
    (d.project_id.clone(), d.endpoint_id, d.id.clone())
}

#[async_trait]
impl WebhookStore for MemoryStore {
    async fn create_endpoint(&self, endpoint: &Endpoint, max: usize) -> StoreResult<()> {
        let key = (endpoint.project_id.clone(), endpoint.id);
        let mut data = lock(&self.data);
        let project = &endpoint.project_id;
        let has = data.endpoints.keys().filter(|(p, _)| p == project).count();
        if has >= max || data.endpoints.contains_key(&key) {
            return Err(StoreError::Conflict);
        }
        data.endpoints.insert(key, endpoint.clone());
        data.audit();
        Ok(())
    }

    async fn update_endpoint(&self, endpoint: &Endpoint) -> StoreResult<()> {
        let key = (endpoint.project_id.clone(), endpoint.id);
        let mut data = lock(&self.data);
        match data.endpoints.get_mut(&key) {
            Some(stored) => {
                *stored = endpoint.clone();
                data.audit();
                Ok(())
            }
            None => Err(StoreError::NotFound),
        }
    }

    async fn delete_endpoint(&self, project: &ProjectId, id: Uuid) -> StoreResult<()> {
        let mut data = lock(&self.data);
        match data.endpoints.remove(&(project.clone(), id)) {
            Some(_) => {
                data.audit();
                Ok(())
            }
            None => Err(StoreError::NotFound),
        }
    }

    async fn list_endpoints(&self, project: &ProjectId) -> StoreResult<Vec<Endpoint>> {
        let data = lock(&self.data);
        let mine = data.endpoints.values().filter(|e| &e.project_id == project);
        Ok(mine.cloned().collect())
    }

    async fn all_endpoints(&self) -> StoreResult<Vec<Endpoint>> {
        Ok(lock(&self.data).endpoints.values().cloned().collect())
    }

    async fn put_delivery(
        &self,
        delivery: &Delivery,
        was_due: Option<DateTime<Utc>>,
    ) -> StoreResult<()> {
        let mut data = lock(&self.data);
        let gone = |slug: String| {
            Slug::parse(&slug).map_or(true, |s| {
                !data.tickets.contains_key(&(delivery.project_id.clone(), s))
            })
        };
        if was_due.is_some() && delivery.ticket().is_some_and(gone) {
            data.deliveries.remove(&delivery_key(delivery));
        } else {
            data.deliveries
                .insert(delivery_key(delivery), delivery.clone());
        }
        data.audit();
        drop(data);
        self.claims.release(&delivery.id);
        Ok(())
    }

    async fn prune_deliveries(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<usize> {
        let mut data = lock(&self.data);
        let old: Vec<_> = data
            .deliveries
            .iter()
            .filter(|(_, d)| d.created_at < before)
            .map(|(k, _)| k.clone())
            .take(limit)
            .collect();
        for k in &old {
            data.deliveries.remove(k);
        }
        Ok(old.len())
    }

    async fn claim_delivery(
        &self,
        delivery: &Delivery,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let data = lock(&self.data);
        let current = data.deliveries.get(&delivery_key(delivery));
        Ok(self.claims.claim(delivery, current, now, until))
    }

    async fn due_deliveries(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<Delivery>> {
        let data = lock(&self.data);
        let mut due: Vec<&Delivery> = data
            .deliveries
            .values()
            .filter(|d| d.next_attempt_at.is_some_and(|at| at <= now))
            .collect();
        due.sort_by_key(|d| (d.next_attempt_at, d.id.clone()));
        Ok(due.into_iter().take(limit).cloned().collect())
    }

    async fn list_deliveries(
        &self,
        project: &ProjectId,
        endpoint: Uuid,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>> {
        let data = lock(&self.data);
        let mine = data
            .deliveries
            .values()
            .rev()
            .filter(|d| &d.project_id == project && d.endpoint_id == endpoint);
        Ok(mine.take(limit).cloned().collect())
    }

    async fn get_delivery(
        &self,
        project: &ProjectId,
        endpoint: Uuid,
        id: &str,
    ) -> StoreResult<Option<Delivery>> {
        let key = (project.clone(), endpoint, id.to_owned());
        Ok(lock(&self.data).deliveries.get(&key).cloned())
    }
}

#[async_trait]
impl MemberStore for MemoryStore {
    async fn create_member(&self, member: &Member) -> StoreResult<()> {
        let mut data = lock(&self.data);
        let key = (member.project_id.clone(), member.id);
        let taken = data.members.contains_key(&key)
            || data
                .members
                .values()
                .any(|m| m.project_id == member.project_id && m.email == member.email);
        if taken {
            return Err(StoreError::Conflict);
        }
        data.members.insert(key, member.clone());
        data.audit();
        Ok(())
    }

    async fn update_member(&self, member: &Member) -> StoreResult<()> {
        let mut data = lock(&self.data);
        let key = (member.project_id.clone(), member.id);
        let stored = data.members.get_mut(&key).ok_or(StoreError::NotFound)?;
        let email = std::mem::take(&mut stored.email);
        *stored = Member {
            email,
            ..member.clone()
        };
        data.audit();
        Ok(())
    }

    async fn get_member(&self, project: &ProjectId, id: Uuid) -> StoreResult<Option<Member>> {
        Ok(lock(&self.data)
            .members
            .get(&(project.clone(), id))
            .cloned())
    }

    async fn member_by_email(
        &self,
        project: &ProjectId,
        email: &str,
    ) -> StoreResult<Option<Member>> {
        let data = lock(&self.data);
        let found = data
            .members
            .values()
            .find(|m| &m.project_id == project && m.email == email);
        Ok(found.cloned())
    }

    async fn list_members(&self, project: &ProjectId) -> StoreResult<Vec<Member>> {
        let data = lock(&self.data);
        let members = data.members.values().filter(|m| &m.project_id == project);
        Ok(members.cloned().collect())
    }

    async fn put_member_session(&self, session: &MemberSession) -> StoreResult<()> {
        let key = (
            session.project_id.clone(),
            session.member_id,
            session.id.clone(),
        );
        let mut data = lock(&self.data);
        data.member_sessions.insert(key, session.clone());
        data.audit();
        Ok(())
    }

    async fn get_member_session(
        &self,
        project: &ProjectId,
        member: Uuid,
        id: &str,
    ) -> StoreResult<Option<MemberSession>> {
        let key = (project.clone(), member, id.to_owned());
        Ok(lock(&self.data).member_sessions.get(&key).cloned())
    }

    async fn list_member_sessions(
        &self,
        project: &ProjectId,
        member: Uuid,
    ) -> StoreResult<Vec<MemberSession>> {
        let data = lock(&self.data);
        let sessions = data
            .member_sessions
            .values()
            .filter(|s| &s.project_id == project && s.member_id == member);
        Ok(sessions.cloned().collect())
    }

    async fn delete_member_session(
        &self,
        project: &ProjectId,
        member: Uuid,
        id: &str,
    ) -> StoreResult<()> {
        let key = (project.clone(), member, id.to_owned());
        let mut data = lock(&self.data);
        match data.member_sessions.remove(&key) {
            Some(_) => {
                data.audit();
                Ok(())
            }
            None => Err(StoreError::NotFound),
        }
    }

    async fn delete_member_sessions(
        &self,
        project: &ProjectId,
        member: Uuid,
    ) -> StoreResult<usize> {
        let mut data = lock(&self.data);
        let before = data.member_sessions.len();
        data.member_sessions
            .retain(|(p, m, _), _| !(p == project && *m == member));
        data.audit();
        Ok(before - data.member_sessions.len())
    }

    async fn create_api_token(&self, token: &ApiToken) -> StoreResult<()> {
        let mut data = lock(&self.data);
        let key = (token.project_id.clone(), token.id);
        if data.api_tokens.contains_key(&key) {
            return Err(StoreError::Conflict);
        }
        data.api_tokens.insert(key, token.clone());
        data.audit();
        Ok(())
    }

    async fn get_api_token(&self, project: &ProjectId, id: Uuid) -> StoreResult<Option<ApiToken>> {
        let key = (project.clone(), id);
        Ok(lock(&self.data).api_tokens.get(&key).cloned())
    }

    async fn list_api_tokens(&self, project: &ProjectId) -> StoreResult<Vec<ApiToken>> {
        let data = lock(&self.data);
        let tokens = data
            .api_tokens
            .values()
            .filter(|t| &t.project_id == project);
        Ok(tokens.cloned().collect())
    }

    async fn touch_api_token(
        &self,
        project: &ProjectId,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut data = lock(&self.data);
        let token = data
            .api_tokens
            .get_mut(&(project.clone(), id))
            .ok_or(StoreError::NotFound)?;
        token.last_used_at = Some(at);
        data.audit();
        Ok(())
    }

    async fn delete_api_token(&self, project: &ProjectId, id: Uuid) -> StoreResult<()> {
        let mut data = lock(&self.data);
        match data.api_tokens.remove(&(project.clone(), id)) {
            Some(_) => {
                data.audit();
                Ok(())
            }
            None => Err(StoreError::NotFound),
        }
    }

    async fn get_member_totp(
        &self,
        project: &ProjectId,
        member: Uuid,
    ) -> StoreResult<Option<MemberTotp>> {
        let key = (project.clone(), member);
        Ok(lock(&self.data).member_totp.get(&key).cloned())
    }

    async fn put_member_totp(&self, totp: &MemberTotp, expected: Option<Uuid>) -> StoreResult<()> {
        let mut data = lock(&self.data);
        let key = (totp.project_id.clone(), totp.member_id);
        if data.member_totp.get(&key).map(|t| t.version) != expected {
            return Err(StoreError::Conflict);
        }
        data.member_totp.insert(key, totp.clone());
        data.audit();
        Ok(())
    }

    async fn delete_member_totp(
        &self,
        project: &ProjectId,
        member: Uuid,
        expected: Uuid,
    ) -> StoreResult<()> {
        let mut data = lock(&self.data);
        let key = (project.clone(), member);
        match data.member_totp.get(&key) {
            None => return Err(StoreError::NotFound),
            Some(t) if t.version != expected => return Err(StoreError::Conflict),
            Some(_) => {}
        }
        data.member_totp.remove(&key);
        data.audit();
        Ok(())
    }

    async fn put_member_link(&self, link: &MemberLink) -> StoreResult<()> {
        let key = (link.project_id.clone(), link.id.clone());
        let mut data = lock(&self.data);
        data.member_links.insert(key, link.clone());
        data.audit();
        Ok(())
    }

    async fn get_member_link(
        &self,
        project: &ProjectId,
        id: &str,
    ) -> StoreResult<Option<MemberLink>> {
        let key = (project.clone(), id.to_owned());
        Ok(lock(&self.data).member_links.get(&key).cloned())
    }

    async fn list_member_links(&self, project: &ProjectId) -> StoreResult<Vec<MemberLink>> {
        let data = lock(&self.data);
        let links = data.member_links.values();
        Ok(links
            .filter(|l| &l.project_id == project)
            .cloned()
            .collect())
    }

    async fn delete_member_link(&self, project: &ProjectId, id: &str) -> StoreResult<()> {
        let key = (project.clone(), id.to_owned());
        let mut data = lock(&self.data);
        match data.member_links.remove(&key) {
            Some(_) => {
                data.audit();
                Ok(())
            }
            None => Err(StoreError::NotFound),
        }
    }
}

#[async_trait]
impl CannedStore for MemoryStore {
    async fn create_canned_reply(
        &self,
        reply: &CannedReply,
        max: usize,
    ) -> StoreResult<Result<(), CannedConflict>> {
        let mut data = lock(&self.data);
        let key = (reply.project_id.clone(), reply.id);
        if data.canned.contains_key(&key) {
            return Err(StoreError::Conflict);
        }
        let others: Vec<CannedReply> = data.canned.values().cloned().collect();
        if let Some(conflict) = canned_conflict(reply, &others, Some(max)) {
            return Ok(Err(conflict));
        }
        data.canned.insert(key, reply.clone());
        data.audit();
        Ok(Ok(()))
    }

    async fn update_canned_reply(
        &self,
        reply: &CannedReply,
    ) -> StoreResult<Result<(), CannedConflict>> {
        let mut data = lock(&self.data);
        let key = (reply.project_id.clone(), reply.id);
        if !data.canned.contains_key(&key) {
            return Err(StoreError::NotFound);
        }
        let others: Vec<CannedReply> = data.canned.values().cloned().collect();
        if let Some(conflict) = canned_conflict(reply, &others, None) {
            return Ok(Err(conflict));
        }
        data.canned.insert(key, reply.clone());
        data.audit();
        Ok(Ok(()))
    }

    async fn delete_canned_reply(&self, project: &ProjectId, id: Uuid) -> StoreResult<()> {
        let mut data = lock(&self.data);
        match data.canned.remove(&(project.clone(), id)) {
            Some(_) => {
                data.audit();
                Ok(())
            }
            None => Err(StoreError::NotFound),
        }
    }

    async fn list_canned_replies(&self, project: &ProjectId) -> StoreResult<Vec<CannedReply>> {
        let data = lock(&self.data);
        let mine = data.canned.values().filter(|r| &r.project_id == project);
        Ok(mine.cloned().collect())
    }
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn record_audit(&self, record: &AuditRecord) -> StoreResult<()> {
        let key = (record.project_id.clone(), record.cursor());
        lock(&self.data).audit.insert(key, record.clone());
        Ok(())
    }

    async fn list_audit(&self, project: &ProjectId, query: &AuditQuery) -> StoreResult<AuditPage> {
        let data = lock(&self.data);
        let newest_first = data
            .audit
            .iter()
            .rev()
            .filter(|((p, c), _)| p == project && query.after.is_none_or(|a| *c < a))
            .map(|(_, r)| r)
            .take_while(|r| query.since.is_none_or(|s| r.at >= s))
            .cloned();
        Ok(AuditPage::scan(newest_first, query))
    }

    async fn prune_audit(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<usize> {
        let mut data = lock(&self.data);
        let old: Vec<_> = (data.audit.iter())
            .filter(|(_, r)| r.at < before)
            .map(|(k, _)| k.clone())
            .take(limit)
            .collect();
        for k in &old {
            data.audit.remove(k);
        }
        Ok(old.len())
    }
}

#[async_trait]
impl EmailStore for MemoryStore {
    async fn put_member_link_with_email(
        &self,
        link: &MemberLink,
        email: &crate::email::Email,
    ) -> StoreResult<()> {
        let mut data = lock(&self.data);
        let key = (link.project_id.clone(), link.id.clone());
        data.member_links.insert(key, link.clone());
        data.emails.insert(email.id.clone(), email.clone());
        data.audit();
        Ok(())
    }

    async fn put_email(
        &self,
        email: &crate::email::Email,
        _was_due: Option<DateTime<Utc>>,
    ) -> StoreResult<()> {
        let mut data = lock(&self.data);
        if email.ticket.is_some() && !data.emails.contains_key(&email.id) {
            return Err(StoreError::NotFound);
        }
        data.emails.insert(email.id.clone(), email.clone());
        drop(data);
        self.claims.release(&email.id);
        Ok(())
    }

    async fn list_emails(
        &self,
        project: &ProjectId,
        query: &crate::email::EmailQuery,
    ) -> StoreResult<crate::email::EmailPage> {
        use crate::email::EmailCursor;
        let data = lock(&self.data);
        let mut emails: Vec<crate::email::Email> = data
            .emails
            .values()
            .filter(|e| query.matches(project, e))
            .cloned()
            .collect();
        emails.sort_by_key(|e| std::cmp::Reverse(EmailCursor::of(e)));
        emails.truncate(query.page_size() + 1);
        Ok(crate::email::EmailPage::of(emails, query))
    }

    async fn due_emails(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<crate::email::Email>> {
        let data = lock(&self.data);
        let mut due: Vec<&crate::email::Email> = data
            .emails
            .values()
            .filter(|e| e.next_attempt_at.is_some_and(|at| at <= now))
            .collect();
        due.sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
        Ok(due.into_iter().take(limit).cloned().collect())
    }

    async fn get_email(&self, id: &str) -> StoreResult<Option<crate::email::Email>> {
        Ok(lock(&self.data).emails.get(id).cloned())
    }

    async fn claim_email(
        &self,
        email: &crate::email::Email,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let data = lock(&self.data);
        let still_due = email.next_attempt_at.is_some()
            && data
                .emails
                .get(&email.id)
                .is_some_and(|c| c.next_attempt_at == email.next_attempt_at);
        Ok(self.claims.claim_id(&email.id, still_due, now, until))
    }

    async fn get_visitor_mail(
        &self,
        project: &ProjectId,
        slug: &Slug,
    ) -> StoreResult<Option<VisitorMail>> {
        let key = (project.clone(), slug.clone());
        Ok(lock(&self.data).visitor_mails.get(&key).cloned())
    }

    async fn put_visitor_mail(
        &self,
        mail: &VisitorMail,
        _was_due: Option<DateTime<Utc>>,
        email: Option<&crate::email::Email>,
    ) -> StoreResult<()> {
        let mut data = lock(&self.data);
        let key = (mail.project_id.clone(), mail.slug.clone());
        data.visitor_mails.insert(key, mail.clone());
        if let Some(e) = email.filter(|e| data.ticket_stored(e)) {
            data.emails.insert(e.id.clone(), e.clone());
        }
        Ok(())
    }

    async fn due_visitor_mails(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<VisitorMail>> {
        let data = lock(&self.data);
        let mut due: Vec<&VisitorMail> = data
            .visitor_mails
            .values()
            .filter(|m| m.due_at.is_some_and(|at| at <= now))
            .collect();
        due.sort_by(|a, b| {
            (a.due_at, &a.project_id, &a.slug).cmp(&(b.due_at, &b.project_id, &b.slug))
        });
        Ok(due.into_iter().take(limit).cloned().collect())
    }

    async fn create_email(&self, email: &crate::email::Email) -> StoreResult<bool> {
        let mut data = lock(&self.data);
        if data.emails.contains_key(&email.id) || !data.ticket_stored(email) {
            return Ok(false);
        }
        data.emails.insert(email.id.clone(), email.clone());
        Ok(true)
    }

    async fn get_notification_prefs(
        &self,
        project: &ProjectId,
        member: Uuid,
    ) -> StoreResult<Option<NotificationPrefs>> {
        let key = (project.clone(), member);
        Ok(lock(&self.data).notification_prefs.get(&key).cloned())
    }

    async fn put_notification_prefs(&self, prefs: &NotificationPrefs) -> StoreResult<()> {
        let key = (prefs.project_id.clone(), prefs.member_id);
        lock(&self.data)
            .notification_prefs
            .insert(key, prefs.clone());
        Ok(())
    }

    async fn list_notification_prefs(
        &self,
        project: &ProjectId,
    ) -> StoreResult<Vec<NotificationPrefs>> {
        let data = lock(&self.data);
        Ok(data
            .notification_prefs
            .range((project.clone(), Uuid::nil())..=(project.clone(), Uuid::max()))
            .map(|(_, p)| p.clone())
            .collect())
    }
}

#[async_trait]
impl ContactStore for MemoryStore {
    async fn put_contact(&self, contact: &Contact) -> StoreResult<()> {
        let key = (contact.project_id.clone(), order_key(contact.id));
        lock(&self.data).contacts.insert(key, contact.clone());
        Ok(())
    }

    async fn get_contact(&self, project: &ProjectId, id: Uuid) -> StoreResult<Option<Contact>> {
        let key = (project.clone(), order_key(id));
        Ok(lock(&self.data).contacts.get(&key).cloned())
    }

    async fn list_contacts(
        &self,
        project: &ProjectId,
        query: &ContactQuery,
    ) -> StoreResult<ContactPage> {
        let data = lock(&self.data);
        let after = query.after.map(order_key).unwrap_or_default();
        let rows = data
            .contacts
            .range((project.clone(), after)..)
            .take_while(|((p, _), _)| p == project)
            .filter(|((_, k), _)| query.after.is_none_or(|a| *k != order_key(a)))
            .map(|(_, c)| Ok(c.clone()));
        query.page(rows)
    }

    async fn contact_tickets(
        &self,
        project: &ProjectId,
        contact: Uuid,
        limit: usize,
    ) -> StoreResult<Vec<Ticket>> {
        let data = lock(&self.data);
        let mut mine: Vec<&Ticket> = data
            .tickets
            .values()
            .map(|rows| &rows.ticket)
            .filter(|t| &t.project_id == project)
            .filter(|t| t.contact.as_ref().is_some_and(|c| c.id == contact))
            .collect();
        mine.sort_by(|a, b| (b.created_at, &b.slug).cmp(&(a.created_at, &a.slug)));
        Ok(mine.into_iter().take(limit).cloned().collect())
    }

    async fn erase_contact(&self, project: &ProjectId, id: Uuid) -> StoreResult<bool> {
        let key = (project.clone(), order_key(id));
        Ok(lock(&self.data).contacts.remove(&key).is_some())
    }

    async fn put_contact_erasure(&self, erasure: &ContactErasure) -> StoreResult<()> {
        let key = (erasure.project_id.clone(), erasure.contact_id);
        lock(&self.data)
            .contact_erasures
            .insert(key, erasure.clone());
        Ok(())
    }

    async fn delete_contact_erasure(&self, project: &ProjectId, id: Uuid) -> StoreResult<()> {
        lock(&self.data)
            .contact_erasures
            .remove(&(project.clone(), id));
        Ok(())
    }

    async fn pending_contact_erasures(&self) -> StoreResult<Vec<ContactErasure>> {
        Ok(lock(&self.data)
            .contact_erasures
            .values()
            .cloned()
            .collect())
    }
}

#[async_trait]
impl InboundMailStore for MemoryStore {
    async fn put_inbound_mail(&self, mail: &crate::inbound_mail::InboundMail) -> StoreResult<()> {
        let key = (mail.project_id.clone(), mail.slug.clone(), mail.key.clone());
        lock(&self.data).inbound_mail.insert(key, mail.clone());
        Ok(())
    }

    async fn get_inbound_mail(
        &self,
        project: &ProjectId,
        slug: &Slug,
        key: &str,
    ) -> StoreResult<Option<crate::inbound_mail::InboundMail>> {
        let key = (project.clone(), slug.clone(), key.to_owned());
        Ok(lock(&self.data).inbound_mail.get(&key).cloned())
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn flush(&self) -> StoreResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod conformance {
    crate::store_conformance_tests!(async {
        super::MemoryStore::new() as std::sync::Arc<dyn crate::store::Store>
    });
}

//! 2025-11-25 sessions at `/mcp`, each bound to the agent that opened it.
//!
//! rmcp's session manager knows sessions by id and nothing else: any caller that names an
//! `Mcp-Session-Id` reaches that session. Every caller of `/mcp` is some agent, so without
//! a binding one agent holding another's session id could post into it (its calls
//! recorded under the other's run), take its stream (`GET`) or end it (`DELETE`).
//!
//! [`AgentSessions`] wraps rmcp's manager. The HTTP guard handles each request inside
//! [`AgentSessions::serving`] its agent; a session created meanwhile is recorded as that
//! agent's, and every per-session operation rmcp asks of the manager for that request
//! answers only for that agent's sessions: another's is an unknown session, which rmcp
//! answers with the protocol's 404 (and, in the 2026-07-28 era, never asks about). The
//! owner is forgotten when the session closes, however it closes (`DELETE`, idle expiry,
//! a failed handshake): rmcp closes every session through the manager.
//!
//! One agent holds at most [`AgentSessions::limit`] sessions at once (the register's
//! `max_sessions_per_agent`): past it no session is created for that agent until one of its
//! own closes, so an agent (or a leaked token) opening sessions in a loop cannot grow remit's
//! memory without bound. The HTTP guard refuses such an `initialize` with a 429 before rmcp
//! sees it ([`AgentSessions::is_full`]); [`SessionError::TooMany`] holds the limit even for
//! `initialize`s that race past the guard, and the guard answers those refused so with the
//! same 429 ([`AgentSessions::serving_agent_was_refused`]) instead of rmcp's 500. A session
//! no request has touched for rmcp's `keep_alive` (5 minutes) ends by itself and frees its
//! slot.

use futures_core::Stream;
use remit_core::ids::AgentId;
use remit_core::register::DEFAULT_MAX_SESSIONS_PER_AGENT;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::ServerSseMessage;
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError,
};
use rmcp::transport::streamable_http_server::{RestoreOutcome, SessionId, SessionManager};
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

tokio::task_local! {
    /// The agent whose request is being handled.
    static REQUESTER: AgentId;
    /// Whether the request being handled was refused a session for its agent's limit.
    static REFUSED: AtomicBool;
}

/// rmcp's in-memory sessions, each owned by the agent that opened it, at most `limit` an agent.
#[derive(Debug)]
pub struct AgentSessions {
    inner: LocalSessionManager,
    owners: RwLock<Owners>,
    limit: usize,
}

/// Who owns each session, and how many each agent holds (or is opening).
#[derive(Debug, Default)]
struct Owners {
    by_id: HashMap<SessionId, AgentId>,
    // INVARIANT: `held[a]` counts `a`'s sessions in `by_id` plus those being created; never 0
    held: HashMap<AgentId, usize>,
}

impl Default for AgentSessions {
    fn default() -> Self {
        Self::with_limit(DEFAULT_MAX_SESSIONS_PER_AGENT)
    }
}

/// Why a session could not be handled.
#[derive(Debug)]
pub enum SessionError {
    /// rmcp's session manager failed (an unknown session among others).
    Local(LocalSessionManagerError),
    /// A session was to be opened outside [`AgentSessions::serving`]: no agent to own it.
    NoOwner,
    /// The agent already holds as many sessions as it may.
    TooMany {
        /// The most sessions one agent may hold.
        limit: usize,
    },
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(e) => e.fmt(f),
            Self::NoOwner => f.write_str("a session was opened with no agent to own it"),
            Self::TooMany { limit } => {
                write!(
                    f,
                    "the agent already holds {limit} sessions, the most it may"
                )
            }
        }
    }
}

impl std::error::Error for SessionError {}

impl From<LocalSessionManagerError> for SessionError {
    fn from(e: LocalSessionManagerError) -> Self {
        Self::Local(e)
    }
}

impl AgentSessions {
    /// No sessions yet; each agent may hold at most `limit` (at least 1) at once.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            inner: LocalSessionManager::default(),
            owners: RwLock::default(),
            limit: limit.max(1),
        }
    }

    /// The most sessions one agent may hold at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether `agent` holds as many sessions as it may: a new one would be refused.
    pub fn is_full(&self, agent: &AgentId) -> bool {
        self.read()
            .held
            .get(agent)
            .is_some_and(|n| *n >= self.limit)
    }

    /// Whether the agent whose request is being served (inside [`AgentSessions::serving`])
    /// holds as many sessions as it may; outside any request, `false`.
    pub fn serving_agent_is_full(&self) -> bool {
        REQUESTER
            .try_with(|agent| self.is_full(agent))
            .unwrap_or(false)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Owners> {
        self.owners
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Owners> {
        self.owners
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Gives back one of `agent`'s slots.
    fn release(owners: &mut Owners, agent: &AgentId) {
        if let Some(n) = owners.held.get_mut(agent) {
            *n -= 1;
            if *n == 0 {
                owners.held.remove(agent);
            }
        }
    }

    /// Runs `future` (the handling of one request of `agent`'s): the sessions it opens are
    /// `agent`'s, and it reaches no other agent's.
    pub async fn serving<F: Future>(agent: AgentId, future: F) -> F::Output {
        REFUSED
            .scope(AtomicBool::new(false), REQUESTER.scope(agent, future))
            .await
    }

    /// Whether the request being served (inside [`AgentSessions::serving`]) was refused a
    /// session because its agent holds as many as it may: an `initialize` that raced others
    /// past [`AgentSessions::is_full`] and lost the last slot (rmcp answers it 500).
    /// Outside any request, `false`.
    pub fn serving_agent_was_refused() -> bool {
        REFUSED
            .try_with(|refused| refused.load(Ordering::Relaxed))
            .unwrap_or(false)
    }

    /// Whether session `id` is open and was opened by `agent`.
    pub fn belongs_to(&self, id: &str, agent: &AgentId) -> bool {
        self.read()
            .by_id
            .get(id)
            .is_some_and(|owner| owner == agent)
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the request being served may reach session `id`: only its own agent's
    /// (outside any request, nothing may: fail closed).
    fn reachable(&self, id: &SessionId) -> bool {
        REQUESTER
            .try_with(|agent| self.belongs_to(id, agent))
            .unwrap_or(false)
    }

    /// `Ok` if the request being served may reach session `id`; otherwise it is unknown to it.
    fn reach(&self, id: &SessionId) -> Result<(), SessionError> {
        if self.reachable(id) {
            Ok(())
        } else {
            Err(LocalSessionManagerError::SessionNotFound(id.clone()).into())
        }
    }

    fn forget(&self, id: &SessionId) {
        let mut owners = self.write();
        if let Some(owner) = owners.by_id.remove(id) {
            Self::release(&mut owners, &owner);
        }
    }
}

/// A slot taken for a session being created; given back on drop unless `kept`.
struct Slot<'a> {
    sessions: &'a AgentSessions,
    owner: &'a AgentId,
    kept: bool,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.kept {
            AgentSessions::release(&mut self.sessions.write(), self.owner);
        }
    }
}

/// Calls through the trait, whose streams are `Sync` (the local manager's own signatures do not say so).
fn local(m: &LocalSessionManager) -> &impl SessionManager<Error = LocalSessionManagerError> {
    m
}

impl SessionManager for AgentSessions {
    type Error = SessionError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        // INVARIANT: no session exists without an owner; one opened outside a request's
        // scope fails before rmcp creates it
        let owner = REQUESTER
            .try_with(AgentId::clone)
            .map_err(|_| SessionError::NoOwner)?;
        // the slot is taken before the session exists, so racing opens cannot pass the limit
        {
            let mut owners = self.write();
            let held = owners.held.entry(owner.clone()).or_default();
            if *held >= self.limit {
                // said to the guard, which answers as for an agent already at its limit
                let _ = REFUSED.try_with(|refused| refused.store(true, Ordering::Relaxed));
                return Err(SessionError::TooMany { limit: self.limit });
            }
            *held += 1;
        }
        // given back if the session is not created, however that ends (an error, or the
        // request's future dropped while rmcp creates it)
        let mut slot = Slot {
            sessions: self,
            owner: &owner,
            kept: false,
        };
        let (id, transport) = self.inner.create_session().await?;
        self.write().by_id.insert(id.clone(), owner.clone());
        slot.kept = true;
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.reach(id)?;
        Ok(self.inner.initialize_session(id, message).await?)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        Ok(self.reachable(id) && self.inner.has_session(id).await?)
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        // a request (`DELETE`) ends only its own agent's session; rmcp's own close, when a
        // session's service ends (idle expiry, a failed handshake), runs outside any request
        if REQUESTER.try_with(|_| ()).is_ok() && !self.reachable(id) {
            return Err(LocalSessionManagerError::SessionNotFound(id.clone()).into());
        }
        // forgotten first: from here on no agent can reach it, whatever the close does
        self.forget(id);
        Ok(self.inner.close_session(id).await?)
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.reach(id)?;
        Ok(local(&self.inner).create_stream(id, message).await?)
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.reach(id)?;
        Ok(self.inner.accept_message(id, message).await?)
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.reach(id)?;
        Ok(local(&self.inner).create_standalone_stream(id).await?)
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.reach(id)?;
        Ok(local(&self.inner).resume(id, last_event_id).await?)
    }

    async fn restore_session(
        &self,
        _id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        // sessions live in this process only: an unknown id is unknown (404), never re-created unowned
        Ok(RestoreOutcome::NotSupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_is_reached_only_by_the_agent_that_opened_it_until_it_closes() {
        let sessions = AgentSessions::default();
        let alice = AgentId::new("alice");
        let bob = AgentId::new("bob");
        let (id, _transport) = AgentSessions::serving(alice.clone(), sessions.create_session())
            .await
            .unwrap();
        assert!(sessions.belongs_to(&id, &alice));
        assert!(!sessions.belongs_to(&id, &bob));
        assert!(
            AgentSessions::serving(alice.clone(), sessions.has_session(&id))
                .await
                .unwrap()
        );
        assert!(
            !AgentSessions::serving(bob.clone(), sessions.has_session(&id))
                .await
                .unwrap()
        );
        assert!(
            !sessions.has_session(&id).await.unwrap(),
            "outside a request"
        );
        assert!(
            AgentSessions::serving(bob, sessions.close_session(&id))
                .await
                .is_err()
        );
        assert!(sessions.belongs_to(&id, &alice), "another agent ended it");
        AgentSessions::serving(alice.clone(), sessions.close_session(&id))
            .await
            .unwrap();
        assert!(!sessions.belongs_to(&id, &alice));
        assert!(sessions.is_empty());
    }

    #[tokio::test]
    async fn a_session_closed_by_rmcp_itself_is_forgotten() {
        let sessions = AgentSessions::default();
        let (id, _transport) =
            AgentSessions::serving(AgentId::new("alice"), sessions.create_session())
                .await
                .unwrap();
        // the close rmcp runs when a session's service ends runs on a task of its own
        sessions.close_session(&id).await.unwrap();
        assert!(sessions.is_empty());
        assert!(sessions.inner.sessions.read().await.is_empty());
    }

    #[tokio::test]
    async fn an_agent_holds_at_most_its_limit_of_sessions_and_a_closed_one_frees_a_slot() {
        let sessions = AgentSessions::with_limit(2);
        let alice = AgentId::new("alice");
        let bob = AgentId::new("bob");
        let open =
            |agent: &AgentId| AgentSessions::serving(agent.clone(), sessions.create_session());
        let (first, _t1) = open(&alice).await.unwrap();
        assert!(!sessions.is_full(&alice));
        let (_second, _t2) = open(&alice).await.unwrap();
        assert!(sessions.is_full(&alice));
        assert!(
            AgentSessions::serving(alice.clone(), async { sessions.serving_agent_is_full() }).await
        );
        assert!(matches!(
            open(&alice).await,
            Err(SessionError::TooMany { limit: 2 })
        ));
        assert_eq!(
            sessions.inner.sessions.read().await.len(),
            2,
            "refused, yet created"
        );
        // another agent is not held to alice's count
        let (_theirs, _t3) = open(&bob).await.unwrap();
        assert!(!sessions.is_full(&bob));
        // closed (by alice, or by rmcp on idle expiry): the slot is free again
        sessions.close_session(&first).await.unwrap();
        assert!(!sessions.is_full(&alice));
        let (_third, _t4) = open(&alice).await.unwrap();
        assert!(sessions.is_full(&alice));
    }

    #[tokio::test]
    async fn a_request_refused_a_session_for_its_limit_is_told_so_and_no_other() {
        let sessions = AgentSessions::with_limit(1);
        let alice = AgentId::new("alice");
        let open = || {
            AgentSessions::serving(alice.clone(), async {
                let opened = sessions.create_session().await;
                (opened.is_ok(), AgentSessions::serving_agent_was_refused())
            })
        };
        assert_eq!(open().await, (true, false));
        assert_eq!(open().await, (false, true));
        // outside any request, nothing was refused
        assert!(!AgentSessions::serving_agent_was_refused());
    }

    #[tokio::test]
    async fn a_session_with_no_agent_to_own_it_is_not_opened() {
        let sessions = AgentSessions::default();
        assert!(matches!(
            sessions.create_session().await,
            Err(SessionError::NoOwner)
        ));
        assert!(sessions.inner.sessions.read().await.is_empty());
    }
}

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

use futures_core::Stream;
use remit_core::ids::AgentId;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::ServerSseMessage;
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError,
};
use rmcp::transport::streamable_http_server::{RestoreOutcome, SessionId, SessionManager};
use std::collections::HashMap;
use std::sync::RwLock;

tokio::task_local! {
    /// The agent whose request is being handled.
    static REQUESTER: AgentId;
}

/// rmcp's in-memory sessions, each owned by the agent that opened it.
#[derive(Debug, Default)]
pub struct AgentSessions {
    inner: LocalSessionManager,
    owners: RwLock<HashMap<SessionId, AgentId>>,
}

/// Why a session could not be handled.
#[derive(Debug)]
pub enum SessionError {
    /// rmcp's session manager failed (an unknown session among others).
    Local(LocalSessionManagerError),
    /// A session was to be opened outside [`AgentSessions::serving`]: no agent to own it.
    NoOwner,
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(e) => e.fmt(f),
            Self::NoOwner => f.write_str("a session was opened with no agent to own it"),
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
    /// Runs `future` (the handling of one request of `agent`'s): the sessions it opens are
    /// `agent`'s, and it reaches no other agent's.
    pub async fn serving<F: Future>(agent: AgentId, future: F) -> F::Output {
        REQUESTER.scope(agent, future).await
    }

    /// Whether session `id` is open and was opened by `agent`.
    pub fn belongs_to(&self, id: &str, agent: &AgentId) -> bool {
        self.owners
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .is_some_and(|owner| owner == agent)
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.owners
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
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
        self.owners
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
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
        let (id, transport) = self.inner.create_session().await?;
        self.owners
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone(), owner);
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
    async fn a_session_with_no_agent_to_own_it_is_not_opened() {
        let sessions = AgentSessions::default();
        assert!(matches!(
            sessions.create_session().await,
            Err(SessionError::NoOwner)
        ));
        assert!(sessions.inner.sessions.read().await.is_empty());
    }
}

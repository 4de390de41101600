//! Progress reports from an upstream, passed on to the agent that asked for them.
//!
//! An agent asks for progress by sending a `progressToken` in its call's `_meta`. remit
//! sends the upstream a token of its own (so no two agents' tokens can meet on one
//! upstream), and each `notifications/progress` the upstream sends with it goes back to
//! the agent under the agent's token, in order, before the call's result. Over HTTP, rmcp
//! then answers the call as an SSE stream instead of a single JSON body.

use remit_core::ports::Progress;
use rmcp::RoleServer;
use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::Peer;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// One report: progress so far, the total if known, a message.
#[derive(Debug)]
pub(crate) struct Report {
    progress: f64,
    total: Option<f64>,
    message: Option<String>,
}

/// Most reports queued for one agent; an upstream that reports faster than the agent reads
/// loses the reports beyond it (progress is advice, memory is not).
const MAX_QUEUED_REPORTS: usize = 256;

/// The pipeline's end of one call's reports: queues them for [`forward_while`].
#[derive(Debug)]
pub(crate) struct Relay(mpsc::Sender<Report>);

impl Relay {
    /// A relay and the receiver its reports arrive on.
    pub(crate) fn new() -> (Self, mpsc::Receiver<Report>) {
        let (tx, rx) = mpsc::channel(MAX_QUEUED_REPORTS);
        (Self(tx), rx)
    }
}

impl Progress for Relay {
    fn report(&self, progress: f64, total: Option<f64>, message: Option<String>) {
        // the agent may be gone, or behind by a full queue: then the report is dropped
        let _ = self.0.try_send(Report {
            progress,
            total,
            message,
        });
    }
}

/// Runs `call` and sends the agent each report under `token` as it comes, the last ones before the call's answer.
pub(crate) async fn forward_while<F: Future>(
    mut reports: mpsc::Receiver<Report>,
    peer: &Peer<RoleServer>,
    token: ProgressToken,
    call: F,
) -> F::Output {
    let notify = async |r: Report| {
        let mut param = ProgressNotificationParam::new(token.clone(), r.progress);
        param.total = r.total;
        param.message = r.message;
        if let Err(e) = peer.notify_progress(param).await {
            tracing::debug!(error = %e, "a progress report could not reach the agent");
        }
    };
    let mut call = std::pin::pin!(call);
    loop {
        tokio::select! {
            biased;
            Some(report) = reports.recv() => notify(report).await,
            outcome = &mut call => {
                while let Ok(report) = reports.try_recv() {
                    notify(report).await;
                }
                return outcome;
            }
        }
    }
}

/// The calls waiting for progress on one upstream, by the token their request carried.
///
/// rmcp's client puts a progress token of its own on every request (a number unique to
/// the connection), so no two agents' tokens can meet on one upstream. The token is known
/// once the request is queued, so a report that overtakes the registration is held
/// (a few at most) until it comes.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    inner: Mutex<WaitingInner>,
}

#[derive(Debug, Default)]
struct WaitingInner {
    calls: HashMap<ProgressToken, Arc<dyn Progress>>,
    early: std::collections::VecDeque<ProgressNotificationParam>,
}

/// Most reports held for calls not registered yet.
const MAX_EARLY: usize = 64;

impl Waiting {
    fn lock(&self) -> std::sync::MutexGuard<'_, WaitingInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends the call's reports under `token` to `to` until the registration is dropped.
    pub(crate) fn register(
        self: &Arc<Self>,
        token: ProgressToken,
        to: Arc<dyn Progress>,
    ) -> Registered {
        {
            // under the lock: a report that comes meanwhile waits for the ones held before it
            let mut inner = self.lock();
            let (mine, rest): (Vec<_>, Vec<_>) = inner
                .early
                .drain(..)
                .partition(|p| p.progress_token == token);
            inner.early = rest.into();
            for p in mine {
                to.report(p.progress, p.total, p.message);
            }
            inner.calls.insert(token.clone(), Arc::clone(&to));
        }
        Registered {
            waiting: Arc::clone(self),
            token,
            to,
        }
    }

    /// The upstream is reached over a new connection, whose tokens start again: reports
    /// held from the last one (late ones, for calls that ended) would be taken for the new
    /// connection's calls that get the same tokens, so they are dropped.
    pub(crate) fn new_connection(&self) {
        self.lock().early.clear();
    }

    /// Passes an upstream's report to the call it belongs to.
    pub(crate) fn deliver(&self, param: ProgressNotificationParam) {
        let to = {
            let mut inner = self.lock();
            match inner.calls.get(&param.progress_token) {
                Some(to) => Arc::clone(to),
                None => {
                    // a report for a call not registered yet, or one that has ended
                    if inner.early.len() == MAX_EARLY {
                        inner.early.pop_front();
                    }
                    inner.early.push_back(param);
                    return;
                }
            }
        };
        to.report(param.progress, param.total, param.message);
    }
}

/// A call's registration for progress; dropped when the call ends.
#[derive(Debug)]
pub(crate) struct Registered {
    waiting: Arc<Waiting>,
    token: ProgressToken,
    to: Arc<dyn Progress>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut inner = self.waiting.lock();
        // only its own: a call of a connection that has gone may end after a call of the
        // new connection registered the same token
        if inner
            .calls
            .get(&self.token)
            .is_some_and(|to| Arc::ptr_eq(to, &self.to))
        {
            inner.calls.remove(&self.token);
        }
    }
}

/// One `tools/call` on `peer`, with `meta` added to rmcp's own (it wins), and its progress
/// reports to `progress`'s sink if given; `timeout` cancels it upstream.
pub(crate) async fn call_tool(
    peer: &Peer<rmcp::RoleClient>,
    progress: Option<(&Arc<Waiting>, Arc<dyn Progress>)>,
    params: rmcp::model::CallToolRequestParams,
    meta: Option<rmcp::model::RequestMetaObject>,
    timeout: std::time::Duration,
) -> Result<rmcp::model::CallToolResponse, rmcp::service::ServiceError> {
    use rmcp::model::{CallToolRequest, CallToolResponse, ClientRequest, ServerResult};
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
    let mut options = rmcp::service::PeerRequestOptions::with_timeout(timeout);
    options.meta = meta;
    let handle = peer.send_request_with_option(request, options).await?;
    let registered =
        progress.map(|(waiting, to)| waiting.register(handle.progress_token.clone(), to));
    let response = handle.await_response().await;
    if registered.is_some() {
        // rmcp hands each notification to the client handler on a task of its own, and
        // the response straight to the caller: the last reports may still be queued
        // behind it. Two turns of the scheduler let them run before the registration ends.
        for _ in 0..2 {
            tokio::task::yield_now().await;
        }
    }
    drop(registered);
    match response? {
        ServerResult::CallToolResult(result) => Ok(result.into()),
        ServerResult::InputRequiredResult(asked) => Ok(asked.into()),
        ServerResult::CreateTaskResult(task) => Ok(CallToolResponse::Task(task)),
        other => contentless(other)
            .map(CallToolResponse::Complete)
            .ok_or(rmcp::service::ServiceError::UnexpectedResponse),
    }
}

/// A `tools/call` answer with no `content`, which rmcp's untagged decoding takes for
/// another kind of result: an empty result, a bare `resultType`, or `_meta` alone.
fn contentless(result: rmcp::model::ServerResult) -> Option<rmcp::model::CallToolResult> {
    use rmcp::model::{CallToolResult, MetaObject, ServerResult};
    let (result_type, meta) = match result {
        ServerResult::EmptyResult(_) => (None, None),
        ServerResult::TaskAckResult(ack) => (Some(ack.result_type), ack.meta),
        ServerResult::CustomResult(custom) => {
            let serde_json::Value::Object(mut fields) = custom.0 else {
                return None;
            };
            let meta = fields.remove("_meta")?;
            if !fields.is_empty() {
                return None;
            }
            (None, Some(serde_json::from_value::<MetaObject>(meta).ok()?))
        }
        _ => return None,
    };
    let mut out = CallToolResult::default();
    out.result_type = result_type;
    out.meta = meta;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::NumberOrString;

    /// Keeps the reports it is given.
    #[derive(Debug, Default)]
    struct Kept(Mutex<Vec<(f64, Option<String>)>>);

    impl Progress for Kept {
        fn report(&self, progress: f64, _total: Option<f64>, message: Option<String>) {
            self.0.lock().unwrap().push((progress, message));
        }
    }

    fn report(token: i64, progress: f64) -> ProgressNotificationParam {
        let mut p =
            ProgressNotificationParam::new(ProgressToken(NumberOrString::Number(token)), progress);
        p.message = Some(format!("{token}:{progress}"));
        p
    }

    #[test]
    fn reports_go_to_their_own_call_and_none_after_it_ended() {
        let waiting = Arc::new(Waiting::default());
        let (one, two) = (Arc::new(Kept::default()), Arc::new(Kept::default()));
        let r1 = waiting.register(ProgressToken(NumberOrString::Number(1)), one.clone());
        let r2 = waiting.register(ProgressToken(NumberOrString::Number(2)), two.clone());
        waiting.deliver(report(1, 1.0));
        waiting.deliver(report(2, 5.0));
        waiting.deliver(report(1, 2.0));
        drop(r1);
        waiting.deliver(report(1, 3.0));
        drop(r2);
        assert_eq!(
            *one.0.lock().unwrap(),
            vec![(1.0, Some("1:1".to_owned())), (2.0, Some("1:2".to_owned()))]
        );
        assert_eq!(*two.0.lock().unwrap(), vec![(5.0, Some("2:5".to_owned()))]);
    }

    #[test]
    fn a_report_that_overtakes_its_registration_is_held_for_it_a_few_at_most() {
        let waiting = Arc::new(Waiting::default());
        waiting.deliver(report(7, 1.0));
        for n in 0..MAX_EARLY {
            waiting.deliver(report(100 + n as i64, 0.0));
        }
        waiting.deliver(report(8, 1.0));
        let (seven, eight) = (Arc::new(Kept::default()), Arc::new(Kept::default()));
        let _r7 = waiting.register(ProgressToken(NumberOrString::Number(7)), seven.clone());
        let _r8 = waiting.register(ProgressToken(NumberOrString::Number(8)), eight.clone());
        assert!(
            seven.0.lock().unwrap().is_empty(),
            "pushed out by later ones"
        );
        assert_eq!(
            *eight.0.lock().unwrap(),
            vec![(1.0, Some("8:1".to_owned()))]
        );
        assert_eq!(waiting.lock().early.len(), MAX_EARLY - 1);
    }

    #[test]
    fn a_new_connection_reuses_tokens_without_taking_the_old_ones_reports_or_registrations() {
        let waiting = Arc::new(Waiting::default());
        let old = Arc::new(Kept::default());
        let r_old = waiting.register(ProgressToken(NumberOrString::Number(3)), old.clone());
        // a late report for a call of the old connection that has ended
        waiting.deliver(report(4, 9.0));
        waiting.new_connection();
        let new = Arc::new(Kept::default());
        let _r4 = waiting.register(ProgressToken(NumberOrString::Number(4)), new.clone());
        assert!(
            new.0.lock().unwrap().is_empty(),
            "the old connection's report"
        );
        // the new connection gives token 3 to another call while the old call is still ending
        let other = Arc::new(Kept::default());
        let _r3 = waiting.register(ProgressToken(NumberOrString::Number(3)), other.clone());
        drop(r_old);
        waiting.deliver(report(3, 1.0));
        assert_eq!(
            *other.0.lock().unwrap(),
            vec![(1.0, Some("3:1".to_owned()))]
        );
        assert!(old.0.lock().unwrap().is_empty());
    }

    #[test]
    fn an_agent_that_falls_behind_loses_reports_beyond_the_queue_not_memory() {
        let (relay, mut reports) = Relay::new();
        for n in 0..(MAX_QUEUED_REPORTS + 50) {
            relay.report(n as f64, None, None);
        }
        let mut kept = 0;
        while let Ok(r) = reports.try_recv() {
            assert_eq!(r.progress, kept as f64, "in order");
            kept += 1;
        }
        assert_eq!(kept, MAX_QUEUED_REPORTS);
    }

    #[test]
    fn an_answer_without_content_is_a_result_with_none() {
        use rmcp::model::{CustomResult, EmptyResult, ServerResult};
        use serde_json::json;
        let empty = contentless(ServerResult::EmptyResult(EmptyResult::from(()))).unwrap();
        assert!(empty.content.is_empty() && empty.meta.is_none() && empty.is_error.is_none());
        let only_meta = json!({ "_meta": { "trace": "t-1" } });
        let with_meta = contentless(ServerResult::CustomResult(CustomResult(only_meta))).unwrap();
        assert_eq!(with_meta.meta.unwrap().0.get("trace"), Some(&json!("t-1")));
        // anything more than `_meta` is not a tool's result: refused, not guessed at
        let more = json!({ "_meta": {}, "rows": [1] });
        assert!(contentless(ServerResult::CustomResult(CustomResult(more))).is_none());
        assert!(contentless(ServerResult::CustomResult(CustomResult(json!([1])))).is_none());
    }
}

//! Running a call to its end even when the caller stops waiting for it.

use remit_core::pipeline::{Call, Caller, Gateway, Outcome};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

/// Runs a call through the pipeline to its end, whether or not its caller keeps waiting.
///
/// Every entry calls this: a call is never cut off between its upstream request and the
/// audit event that records the result, and a call whose caller has gone before it reached
/// the upstream is not sent.
pub async fn call_to_the_end(gateway: &Arc<Gateway>, call: Call) -> Outcome {
    let gateway = Arc::clone(gateway);
    finish_even_if_dropped(call.caller.clone(), async move { gateway.call(call).await }).await
}

/// Runs `future` to its end even if the caller stops waiting: dropped early, it marks `caller` gone and finishes on a task of its own.
///
/// An HTTP server drops a request's future when its client hangs up (rmcp, when a request
/// is cancelled). A call dropped between its upstream request and the audit event that
/// records the result would leave a `decided` with no outcome; this hands the rest of it
/// to the runtime instead, and the pipeline, seeing the caller gone, does not send a call
/// it has not sent yet. While the caller waits, the call runs on the caller's task: no
/// task spawn, no extra wake-up.
pub(crate) async fn finish_even_if_dropped<F>(caller: Caller, future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut guard = Finish(Some(Box::pin(future)), caller);
    let output = std::future::poll_fn(|cx| match guard.0.as_mut() {
        Some(future) => future.as_mut().poll(cx),
        None => Poll::Pending,
    })
    .await;
    guard.0 = None;
    output
}

/// Holds an unfinished future; dropped, it marks the caller gone and spawns it.
struct Finish<F: Future + Send + 'static>(Option<Pin<Box<F>>>, Caller)
where
    F::Output: Send + 'static;

impl<F> Drop for Finish<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn drop(&mut self) {
        if let Some(future) = self.0.take() {
            self.1.leave();
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(future);
                }
                Err(_) => tracing::error!("a call was cut off: no runtime to finish it on"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn a_future_dropped_midway_still_runs_to_its_end() {
        let ended = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ended);
        let caller = Caller::waiting();
        let call = finish_even_if_dropped(caller.clone(), async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            flag.store(true, Ordering::SeqCst);
        });
        // the caller gives up after 10 ms
        assert!(
            tokio::time::timeout(Duration::from_millis(10), call)
                .await
                .is_err()
        );
        assert!(!ended.load(Ordering::SeqCst));
        assert!(caller.is_gone(), "the caller was not marked gone");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            ended.load(Ordering::SeqCst),
            "the dropped call did not finish"
        );
    }

    #[tokio::test]
    async fn a_future_awaited_to_its_end_gives_its_output() {
        let caller = Caller::waiting();
        assert_eq!(finish_even_if_dropped(caller.clone(), async { 7 }).await, 7);
        assert!(!caller.is_gone());
    }
}

//! A connection's future, polled so that the wakes it gives itself do not reschedule its task.
//!
//! While one request is served, hyper wakes the connection's own task several times:
//! reading the request body tells the connection it may read more, the upstream
//! client queues the request on its connection and is told its answer is in. Each is a
//! wake of the task that is running. tokio puts a task woken while it runs back on the
//! run queue and wakes an idle worker to steal it: with one client, about two cross-core
//! wake-ups per call for nothing (measured in `BENCHMARKS.md`, run 8).
//!
//! [`Repoll`] hands its future a waker of its own. A wake while the future is being
//! polled only makes [`Repoll`] poll it once more, up to [`MAX_TURNS`] times; a wake
//! while it waits wakes the task as usual; a wake after it has finished is dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// Most polls of the future in one poll of its task; then the task is rescheduled.
pub(crate) const MAX_TURNS: u32 = 8;

/// A future whose wakes during its own poll make it poll again instead of rescheduling.
pub(crate) struct Repoll<F> {
    future: Pin<Box<F>>,
    wake: Arc<Shared>,
    waker: Waker,
}

impl<F> std::fmt::Debug for Repoll<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repoll").finish_non_exhaustive()
    }
}

/// What the future's waker and [`Repoll::poll`] share.
#[derive(Debug, Default)]
struct Shared {
    /// The future returned `Pending`: a wake must reach the task.
    waiting: AtomicBool,
    /// A wake came since the current turn began.
    woken: AtomicBool,
    /// The task's waker, from its last poll.
    task: Mutex<Option<Waker>>,
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) {
            self.wake_task();
        }
    }
}

impl Shared {
    fn wake_task(&self) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(waker) = task.as_ref() {
            waker.wake_by_ref();
        }
    }
}

impl<F: Future> Repoll<F> {
    /// Wraps `future`.
    pub(crate) fn new(future: F) -> Self {
        let wake = Arc::new(Shared::default());
        Self {
            future: Box::pin(future),
            waker: Waker::from(Arc::clone(&wake)),
            wake,
        }
    }
}

impl<F: Future> Future for Repoll<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let shared = &this.wake;
        shared.waiting.store(false, Ordering::SeqCst);
        {
            let mut task = shared
                .task
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        let mut own = Context::from_waker(&this.waker);
        for _ in 0..MAX_TURNS {
            shared.woken.store(false, Ordering::SeqCst);
            if let Poll::Ready(out) = this.future.as_mut().poll(&mut own) {
                // nobody waits on it any more: later wakes are dropped
                return Poll::Ready(out);
            }
            if !shared.woken.load(Ordering::SeqCst) {
                break;
            }
        }
        shared.waiting.store(true, Ordering::SeqCst);
        // a wake that came after the last turn (or cut the turns short) reaches the task
        if shared.woken.swap(false, Ordering::SeqCst) {
            shared.wake_task();
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Counter>, Waker) {
        let counter = Arc::new(Counter::default());
        (Arc::clone(&counter), Waker::from(counter))
    }

    /// Wakes itself during its poll `times` times, then is ready.
    fn waking_itself(mut times: u32) -> impl Future<Output = u32> {
        let mut polls = 0;
        std::future::poll_fn(move |cx| {
            polls += 1;
            if times == 0 {
                return Poll::Ready(polls);
            }
            times -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        })
    }

    #[test]
    fn wakes_during_its_own_poll_are_served_in_the_same_poll_of_the_task() {
        let (counter, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(Repoll::new(waking_itself(3)));
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Ready(4));
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            0,
            "the task was never rescheduled"
        );
    }

    #[test]
    fn a_future_that_keeps_waking_itself_gives_its_task_back_and_is_rescheduled() {
        let (counter, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(Repoll::new(waking_itself(MAX_TURNS + 2)));
        assert!(f.as_mut().poll(&mut cx).is_pending());
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "woken to come back");
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Ready(MAX_TURNS + 3));
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_wake_while_it_waits_wakes_the_task_and_one_after_it_ended_does_not() {
        let (counter, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let kept: Arc<Mutex<Option<Waker>>> = Arc::default();
        let ready = Arc::new(AtomicBool::new(false));
        let (k, r) = (Arc::clone(&kept), Arc::clone(&ready));
        let mut f = std::pin::pin!(Repoll::new(std::future::poll_fn(move |cx| {
            *k.lock().unwrap() = Some(cx.waker().clone());
            if r.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })));
        assert!(f.as_mut().poll(&mut cx).is_pending());
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
        ready.store(true, Ordering::SeqCst);
        kept.lock().unwrap().as_ref().unwrap().wake_by_ref();
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "the wake reached the task"
        );
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Ready(()));
        kept.lock().unwrap().as_ref().unwrap().wake_by_ref();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "nobody waits any more");
    }

    /// Each poll hands the waker to another thread, which wakes it a moment later, so
    /// wakes race with the end of the poll. A lost wake leaves the task asleep forever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_wake_from_another_thread_is_lost() {
        let (tx, rx) = std::sync::mpsc::channel::<Waker>();
        let waker_thread = std::thread::spawn(move || {
            let mut n = 0u32;
            while let Ok(w) = rx.recv() {
                n = n.wrapping_add(1);
                for _ in 0..(n % 64) {
                    std::hint::spin_loop();
                }
                w.wake();
            }
        });
        let mut left = 20_000u32;
        let counted = Repoll::new(std::future::poll_fn(move |cx| {
            if left == 0 {
                return Poll::Ready(());
            }
            left -= 1;
            tx.send(cx.waker().clone()).unwrap();
            // the wake lands before, during or after the end of this poll
            for _ in 0..(left % 48) {
                std::hint::spin_loop();
            }
            Poll::Pending
        }));
        tokio::time::timeout(std::time::Duration::from_secs(30), counted)
            .await
            .expect("a wake was lost: the future never finished");
        waker_thread.join().unwrap();
    }
}

//! Async completions: the client side of `AsyncCompletion` (docs/driverkit.md §4).
//!
//! A call that completes later hands the transport a [`CompletionSlot`]; the
//! transport's notification path fills it with the status and values the dext
//! sent. The caller holds a [`Pending`], which is a `Future` (with a real
//! waker, usable from any executor) and also offers blocking `wait` and
//! `wait_timeout`. Dropping a `Pending` is safe: a completion that arrives
//! later is discarded. A timeout is not a cancellation: after
//! `Error::Timeout` the same `Pending` can be waited on again.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::{Error, IoReturn};

/// At most 16 values follow the status (docs/driverkit.md §1 limit 4).
pub const MAX_COMPLETION_VALUES: usize = 16;

/// What a completion delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completed {
    pub status: IoReturn,
    values: [u64; MAX_COMPLETION_VALUES],
    count: usize,
}

impl Completed {
    pub fn new(status: IoReturn, values: &[u64]) -> Completed {
        let count = values.len().min(MAX_COMPLETION_VALUES);
        let mut all = [0; MAX_COMPLETION_VALUES];
        all[..count].copy_from_slice(&values[..count]);
        Completed { status, values: all, count }
    }

    pub fn values(&self) -> &[u64] {
        &self.values[..self.count]
    }
}

#[derive(Debug, Default)]
struct State {
    outcome: Option<Result<Completed, Error>>,
    waker: Option<Waker>,
    abandoned: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave `State` inconsistent
        // (every update is a single assignment), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The transport's end of one async call.
#[derive(Debug, Clone)]
pub struct CompletionSlot(Arc<Shared>);

impl CompletionSlot {
    /// Delivers the completion. Only the first delivery counts; later ones
    /// (and deliveries after the `Pending` was dropped) are ignored, as
    /// DriverKit ignores completions for a client that went away (§4.3-5).
    pub fn complete(&self, status: IoReturn, values: &[u64]) {
        self.finish(Ok(Completed::new(status, values)));
    }

    /// Ends the call without a completion (e.g. `Error::Disconnected`).
    pub fn fail(&self, error: Error) {
        self.finish(Err(error));
    }

    fn finish(&self, outcome: Result<Completed, Error>) {
        let waker = {
            let mut state = self.0.lock();
            if state.outcome.is_some() || state.abandoned {
                return;
            }
            state.outcome = Some(outcome);
            state.waker.take()
        };
        self.0.ready.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether nobody waits for this completion any more.
    pub fn is_abandoned(&self) -> bool {
        self.0.lock().abandoned
    }

    /// Whether the completion has been delivered (or failed).
    pub fn is_finished(&self) -> bool {
        self.0.lock().outcome.is_some()
    }
}

/// A completion to come, decoded into `T` when it arrives.
#[must_use = "a Pending does nothing unless waited on or polled"]
pub struct Pending<T> {
    shared: Arc<Shared>,
    decode: fn(Completed) -> Result<T, Error>,
    method: &'static str,
}

impl<T> std::fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("method", &self.method).finish_non_exhaustive()
    }
}

impl<T> Pending<T> {
    /// A pending completion and the slot to hand the transport. `decode`
    /// turns the delivered status and values into `T` (or an error).
    pub fn new(
        method: &'static str,
        decode: fn(Completed) -> Result<T, Error>,
    ) -> (Pending<T>, CompletionSlot) {
        let shared = Arc::new(Shared::default());
        (Pending { shared: Arc::clone(&shared), decode, method }, CompletionSlot(shared))
    }

    /// The method this completion belongs to.
    pub fn method(&self) -> &'static str {
        self.method
    }

    fn take(&self, state: &mut State) -> Option<Result<T, Error>> {
        state.outcome.take().map(|outcome| outcome.and_then(self.decode))
    }

    /// The result, if the completion has arrived.
    pub fn try_take(&mut self) -> Option<Result<T, Error>> {
        let mut state = self.shared.lock();
        self.take(&mut state)
    }

    /// Blocks until the completion arrives.
    pub fn wait(self) -> Result<T, Error> {
        let mut state = self.shared.lock();
        loop {
            if let Some(result) = self.take(&mut state) {
                return result;
            }
            state = self.shared.ready.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Blocks until the completion arrives or `timeout` passes. On
    /// `Error::Timeout` the call is still outstanding and this can be called again.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<T, Error> {
        // A timeout too long to represent is no timeout at all.
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.shared.lock();
        loop {
            if let Some(result) = self.take(&mut state) {
                return result;
            }
            state = match deadline {
                None => self.shared.ready.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(Error::Timeout { method: self.method });
                    }
                    let waited = self.shared.ready.wait_timeout(state, deadline - now);
                    waited.unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.shared.lock();
        match self.take(&mut state) {
            Some(result) => Poll::Ready(result),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

// `Pending` holds no self-references: moving it is fine.
impl<T> Unpin for Pending<T> {}

impl<T> Drop for Pending<T> {
    fn drop(&mut self) {
        self.shared.lock().abandoned = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    fn decode(c: Completed) -> Result<u64, Error> {
        c.status.into_result().map_err(|code| Error::Completion {
            method: "m",
            selector: 0,
            code,
        })?;
        c.values()
            .first()
            .copied()
            .ok_or(Error::MalformedReply { method: "m", detail: "no value".into() })
    }

    #[test]
    fn wait_returns_the_delivered_value() {
        let (pending, slot) = Pending::new("m", decode);
        let t = std::thread::spawn(move || slot.complete(IoReturn::SUCCESS, &[42]));
        assert_eq!(pending.wait(), Ok(42));
        t.join().unwrap();
    }

    #[test]
    fn timeout_is_not_cancellation_and_can_be_waited_again() {
        let (mut pending, slot) = Pending::new("m", decode);
        assert_eq!(
            pending.wait_timeout(Duration::from_millis(5)),
            Err(Error::Timeout { method: "m" })
        );
        slot.complete(IoReturn::SUCCESS, &[7]);
        assert_eq!(pending.wait_timeout(Duration::from_millis(5)), Ok(7));
    }

    #[test]
    fn only_the_first_delivery_counts_and_errors_decode() {
        let (pending, slot) = Pending::new("m", decode);
        slot.complete(IoReturn::ABORTED, &[]);
        slot.complete(IoReturn::SUCCESS, &[1]);
        assert_eq!(
            pending.wait(),
            Err(Error::Completion { method: "m", selector: 0, code: IoReturn::ABORTED })
        );
    }

    #[test]
    fn dropping_pending_makes_late_completions_no_ops() {
        let (pending, slot) = Pending::new("m", decode);
        drop(pending);
        assert!(slot.is_abandoned());
        slot.complete(IoReturn::SUCCESS, &[1]);
        assert!(!slot.is_finished());
    }

    #[test]
    fn disconnect_fails_the_wait() {
        let (pending, slot) = Pending::new("m", decode);
        slot.fail(Error::Disconnected);
        assert_eq!(pending.wait(), Err(Error::Disconnected));
    }

    struct CountingWaker(std::sync::atomic::AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn the_future_registers_a_waker_and_is_woken() {
        let (mut pending, slot) = Pending::new("m", decode);
        let counter = Arc::new(CountingWaker(Default::default()));
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut pending).poll(&mut cx).is_pending());
        slot.complete(IoReturn::SUCCESS, &[9]);
        assert_eq!(counter.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(Pin::new(&mut pending).poll(&mut cx), Poll::Ready(Ok(9)));
    }

    #[test]
    fn values_beyond_sixteen_are_not_kept() {
        let c = Completed::new(IoReturn::SUCCESS, &[1; 20]);
        assert_eq!(c.values().len(), 16);
    }
}

//! An upload on a thread of its own: a `Future` of its result with a
//! blocking `wait`, cancelled when dropped unfinished (as nusb's transfers are).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;

use super::{Cancel, Progress, StagingDevice, Summary, Upload, UploadError};
use crate::Error;

type Outcome = Result<Summary, UploadError>;

#[derive(Debug, Default)]
struct State {
    outcome: Option<Outcome>,
    waker: Option<Waker>,
    finished: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a single assignment: a poisoned lock holds a
        // consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running upload (see [`Upload::spawn`]).
#[derive(Debug)]
pub struct UploadHandle {
    shared: Arc<Shared>,
    cancel: Cancel,
    thread: Option<JoinHandle<()>>,
}

pub(super) fn spawn<D, C, P>(upload: Upload, connect: C, progress: P) -> UploadHandle
where
    D: StagingDevice + 'static,
    C: FnMut() -> Result<D, Error> + Send + 'static,
    P: FnMut(&Progress) + Send + 'static,
{
    let shared = Arc::new(Shared::default());
    let cancel = upload.cancel_handle();
    let on_thread = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name("dextlink upload".to_string())
        .spawn(move || {
            let outcome = upload.run(connect, progress);
            let waker = {
                let mut state = on_thread.lock();
                state.outcome = Some(outcome);
                state.finished = true;
                state.waker.take()
            };
            on_thread.ready.notify_all();
            if let Some(waker) = waker {
                waker.wake();
            }
        })
        .expect("spawning the upload thread");
    UploadHandle { shared, cancel, thread: Some(thread) }
}

impl UploadHandle {
    /// Asks the upload to stop; it ends with [`UploadError::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Whether the upload has ended.
    pub fn is_finished(&self) -> bool {
        self.shared.lock().finished
    }

    /// Blocks until the upload ends.
    pub fn wait(mut self) -> Result<Summary, UploadError> {
        let outcome = {
            let mut state = self.shared.lock();
            loop {
                if let Some(outcome) = state.outcome.take() {
                    break outcome;
                }
                state = self.shared.ready.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        outcome
    }
}

impl Future for UploadHandle {
    type Output = Result<Summary, UploadError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.shared.lock();
        match state.outcome.take() {
            Some(outcome) => Poll::Ready(outcome),
            None if state.finished => Poll::Ready(Err(UploadError::Config(
                "the upload's result was already taken".to_string(),
            ))),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for UploadHandle {
    fn drop(&mut self) {
        if !self.is_finished() {
            self.cancel.cancel();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

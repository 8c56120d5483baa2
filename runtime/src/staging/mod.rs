//! The staging pipeline: a firmware image streamed through a ring of slots in
//! memory shared with the dext, into pipelined USB transfers.
//!
//! The dext allocates the ring (a read-write memory type of `SLOT_COUNT ×
//! SLOT_SIZE` bytes) and maps it into the client. For each slot the client:
//!
//! 1. reads the next stretch of the image from the file straight into the
//!    mapped slot, after room for the header (no intermediate buffer);
//! 2. computes the payload's CRC-32 and writes the schema's slot header in
//!    place at the start of the slot, through zerocopy;
//! 3. submits the slot; the dext turns it into an `IOUSBHostPipe::AsyncIO`
//!    and completes the submit when the transfer is done.
//!
//! Up to N slots are in flight at once, and a slot is refilled the moment
//! its completion arrives, in whatever order completions come back. Memory
//! use is the ring, whatever the image size.
//!
//! # Recovery
//!
//! | what comes back | what the pipeline does |
//! |---|---|
//! | a stall (`kUSBHostReturnPipeStalled`, docs/driverkit.md §6-7) | the dext has cleared it; resubmit the slot (bounded, counted as a stall) |
//! | `kIOReturnAborted` while not cancelling | another slot's stall was cleared, which aborts all pending IO (§6-4): resubmit (counted as aborted) |
//! | `kIOReturnTimeout` | resubmit (bounded, counted as a timeout: a timeout is not a cancellation) |
//! | fewer bytes than submitted | rewrite the slot to hold the rest and send it (counted as short) |
//! | the connection or the device went away | reconnect and `begin` again, which resumes from the offset the device acknowledged (bounded) |
//! | no completion at all for [`Config::watchdog`] | treated as a lost device: abort, reconnect, resume |
//! | the device refuses to commit (CRC mismatch) | [`UploadError::Refused`]; the device keeps its previous image |
//!
//! Cancelling ([`Cancel`]) aborts the transfers in flight and never calls
//! `finish`, so the device stays on its previous image; a later upload of the
//! same image resumes.
//!
//! The pipeline knows a schema only through [`StagingDevice`], which the
//! crate generated from the schema implements in a few lines (see
//! `examples/fwloader`). It runs blocking ([`Upload::run`]) or on a thread of
//! its own as a `Future` with a blocking `wait` ([`Upload::spawn`]).

mod pipeline;
mod spawn;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::image::{Format, ImageError};
use crate::{Error, IoReturn, Mapping, Pending, ReadWrite};

pub use spawn::UploadHandle;

/// The fields of a slot header, whatever the schema calls its struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotFields {
    /// Increases by one for every transfer of a session (resubmissions too).
    pub sequence: u64,
    /// Where in the image the payload goes.
    pub image_offset: u64,
    /// Payload bytes after the header.
    pub length: u32,
    /// [`slot_crc32`]: the fields above, then the payload.
    pub crc32: u32,
}

/// The CRC-32 a slot header carries: over the little-endian bytes of
/// `sequence`, `image_offset` and `length` (the header's first 20 bytes, as
/// laid out by a schema like fwloader's), then the payload, given as its own
/// CRC-32 (`payload_crc32`, of `length` bytes). Covering the fields too means
/// a bit flipped in the header is caught like one in the payload, not
/// written to the wrong place.
pub fn slot_crc32(sequence: u64, image_offset: u64, length: u32, payload_crc32: u32) -> u32 {
    let mut fields = [0u8; 20];
    fields[..8].copy_from_slice(&sequence.to_le_bytes());
    fields[8..16].copy_from_slice(&image_offset.to_le_bytes());
    fields[16..].copy_from_slice(&length.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&fields);
    crc.combine(&crc32fast::Hasher::new_with_initial_len(payload_crc32, u64::from(length)));
    crc.finalize()
}

/// What identifies an image to the device, sent by `begin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageIdentity {
    /// Bytes in the flattened image.
    pub total_len: u64,
    pub load_address: u64,
    /// CRC-32 of the whole flattened image.
    pub crc32: u32,
    pub format: Format,
}

/// What `begin` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Begun {
    pub session: u64,
    /// Bytes the device already holds from an earlier, interrupted upload of
    /// the same image: the pipeline starts there.
    pub resume_offset: u64,
}

/// What a submit's completion reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acknowledgement {
    /// Bytes of the slot (header included) the device took.
    pub transferred: u32,
    /// The image prefix the device holds, programmed and in order.
    pub acknowledged: u64,
}

/// The device's answer to `finish`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The image verified and is now active.
    Committed,
    /// The device refused to commit; it keeps its previous image.
    Refused { reason: String },
}

/// A dext user client that speaks the staging protocol: the operations a
/// schema like `fwloader.dextlink` declares. `Sync`, because the pipeline
/// makes its submit calls from a thread of its own (every [`Transport`] is
/// `Sync`, so a generated client is).
///
/// [`Transport`]: crate::Transport
pub trait StagingDevice: Sync {
    /// The schema's slot header struct, written at offset 0 of every slot.
    type Header: FromBytes + IntoBytes + KnownLayout + Immutable;
    /// What a submit completes with (the generated completion struct).
    type Submitted;

    /// Slots in the ring the dext allocates.
    const SLOT_COUNT: u32;
    /// Bytes per slot, header included; slot `i` starts at `i × SLOT_SIZE`.
    const SLOT_SIZE: u32;

    /// The header for `fields`.
    fn header(fields: &SlotFields) -> Self::Header;
    /// The bytes transferred and acknowledged that a completion reports.
    fn acknowledgement(submitted: &Self::Submitted) -> Acknowledgement;

    /// Maps the staging ring.
    fn ring(&self) -> Result<Mapping<'_, ReadWrite>, Error>;
    /// Starts (or resumes) an upload of `image`.
    fn begin(&self, image: &ImageIdentity) -> Result<Begun, Error>;
    /// Hands the device slot `slot`, whose first `len` bytes are filled.
    fn submit(&self, slot: u32, len: u32) -> Result<Pending<Self::Submitted>, Error>;
    /// Ends the upload; the device checks the whole-image CRC and commits.
    fn finish(&self, image_crc32: u32) -> Result<Verdict, Error>;
    /// Stops the transfers in flight; the device keeps its previous image.
    fn abort(&self) -> Result<(), Error>;
}

/// How an upload runs. The defaults suit a USB 2.0 or 3 bulk pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Slots in flight at once (at most the schema's `SLOT_COUNT`); 0 = all.
    pub slots: u32,
    /// Bytes used of each slot, header included (at most `SLOT_SIZE`); 0 = all.
    pub slot_size: u32,
    /// Resubmissions of one stretch of the image after stalls.
    pub max_stalls: u32,
    /// Resubmissions of one stretch after timeouts.
    pub max_timeouts: u32,
    /// Resubmissions of one stretch after another slot's stall aborted it.
    pub max_aborted: u32,
    /// Rest-of-slot transfers of one stretch after short transfers.
    pub max_short: u32,
    /// Times the device or the dext may go away during one upload.
    pub max_reconnects: u32,
    /// Attempts to connect again each time it went away.
    pub reconnect_attempts: u32,
    /// First wait before reconnecting; doubles on each attempt, up to 2 s.
    pub reconnect_delay: Duration,
    /// With transfers in flight and no completion for this long, the device
    /// is taken for lost.
    pub watchdog: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            slots: 0,
            slot_size: 0,
            max_stalls: 8,
            max_timeouts: 4,
            max_aborted: 32,
            max_short: 64,
            max_reconnects: 8,
            reconnect_attempts: 10,
            reconnect_delay: Duration::from_millis(20),
            watchdog: Duration::from_secs(30),
        }
    }
}

/// Kinds of retry, counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryKind {
    Stall,
    Timeout,
    Aborted,
    Short,
    Reconnect,
}

impl RetryKind {
    pub fn name(self) -> &'static str {
        match self {
            RetryKind::Stall => "stall",
            RetryKind::Timeout => "timeout",
            RetryKind::Aborted => "aborted",
            RetryKind::Short => "short transfer",
            RetryKind::Reconnect => "reconnect",
        }
    }
}

impl fmt::Display for RetryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Retries so far, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retries {
    pub stalls: u64,
    pub timeouts: u64,
    pub aborted: u64,
    pub short: u64,
    /// Times the device or the dext went away and the upload reconnected.
    pub reconnects: u64,
}

impl Retries {
    pub fn total(&self) -> u64 {
        self.stalls + self.timeouts + self.aborted + self.short + self.reconnects
    }

    fn count(&mut self, kind: RetryKind) {
        match kind {
            RetryKind::Stall => self.stalls += 1,
            RetryKind::Timeout => self.timeouts += 1,
            RetryKind::Aborted => self.aborted += 1,
            RetryKind::Short => self.short += 1,
            RetryKind::Reconnect => self.reconnects += 1,
        }
    }
}

/// What an upload is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading the image once for its CRC-32 (the image's identity).
    Checksum,
    /// Opening the device and starting (or resuming) the session.
    Connect,
    /// Slots in flight.
    Transfer,
    /// Waiting for the device to verify and commit.
    Verify,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Checksum => "checksum",
            Phase::Connect => "connect",
            Phase::Transfer => "transfer",
            Phase::Verify => "verify",
        }
    }
}

/// A progress report, passed to the callback of [`Upload::run`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub phase: Phase,
    /// Image bytes in all.
    pub total: u64,
    /// Image bytes done in this phase (checksummed, or transferred, counting
    /// a resumed prefix as done).
    pub done: u64,
    /// The prefix the device reports programmed.
    pub acknowledged: u64,
    /// Where this upload resumed (0 if it started afresh).
    pub resumed_from: u64,
    /// Time in this phase.
    pub elapsed: Duration,
    /// Bytes per second in this phase (this run's bytes only).
    pub bytes_per_second: f64,
    /// Transfers submitted so far, resubmissions included.
    pub transfers: u64,
    pub retries: Retries,
}

/// What a finished upload did.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub image: ImageIdentity,
    pub session: u64,
    /// Where the first connection resumed (0 if the device had nothing).
    pub resumed_from: u64,
    /// Payload bytes put on the wire, resubmissions included.
    pub bytes_sent: u64,
    /// Transfers submitted, resubmissions included.
    pub transfers: u64,
    pub slots: u32,
    pub slot_size: u32,
    /// Time reading the image for its CRC.
    pub checksum_time: Duration,
    /// Time from the first `begin` to the last completion.
    pub transfer_time: Duration,
    /// Time in `finish`: the device's verify and commit.
    pub verify_time: Duration,
    pub retries: Retries,
}

impl Summary {
    /// Image bytes this run transferred per second of transfer time.
    pub fn transfer_rate(&self) -> f64 {
        rate(self.image.total_len - self.resumed_from, self.transfer_time)
    }
}

fn rate(bytes: u64, time: Duration) -> f64 {
    let seconds = time.as_secs_f64();
    if seconds > 0.0 { bytes as f64 / seconds } else { 0.0 }
}

/// Why an upload failed. In every case the device keeps its previous image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// The configuration does not fit the schema's ring.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The image could not be read.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Connecting to the dext failed (and was not retried, or ran out of retries).
    #[error("cannot connect to the device: {0}")]
    Connect(Error),
    /// An operation failed in a way no retry mends.
    #[error("{operation} failed: {source}")]
    Device {
        operation: &'static str,
        #[source]
        source: Error,
    },
    /// One stretch of the image failed too often.
    #[error(
        "the transfer at image offset {offset:#x} failed {attempts} times ({kind}); giving up \
         (last status: {last})"
    )]
    RetriesExhausted { kind: RetryKind, offset: u64, attempts: u32, last: IoReturn },
    /// The device went away and did not come back after `attempts` tries.
    #[error("lost the device and could not reconnect after {attempts} attempts: {last}")]
    Disconnected { attempts: u32, last: Error },
    /// The device went away more often than [`Config::max_reconnects`] allows.
    #[error("the device went away {times} times, more than the {allowed} allowed; last: {last}")]
    TooManyDisconnects { times: u32, allowed: u32, last: Error },
    /// The device checked the image and refused to commit it.
    #[error("the device refused to commit the image: {reason}; it keeps its previous image")]
    Refused { reason: String },
    /// [`Cancel::cancel`] was called.
    #[error("the upload was cancelled; the device keeps its previous image")]
    Cancelled,
}

/// Cancels a running upload from any thread (a Ctrl-C handler, say).
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<CancelShared>);

#[derive(Debug, Default)]
struct CancelShared {
    cancelled: AtomicBool,
    /// Wakes the pipeline's wait for completions.
    wake: Mutex<Option<Sender<pipeline::Wake>>>,
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks the upload to stop. It aborts the transfers in flight and ends
    /// with [`UploadError::Cancelled`].
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        let wake = self.0.wake.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = wake.as_ref() {
            let _ = sender.send(pipeline::Wake::Cancel);
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    fn attach(&self, sender: Sender<pipeline::Wake>) {
        *self.0.wake.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender);
    }
}

/// One upload of one image: configure, then [`run`](Upload::run) or
/// [`spawn`](Upload::spawn).
#[derive(Debug)]
pub struct Upload {
    image: crate::image::Image,
    config: Config,
    cancel: Cancel,
}

impl Upload {
    /// An upload of `image` with the default [`Config`].
    pub fn new(image: crate::image::Image) -> Upload {
        Upload { image, config: Config::default(), cancel: Cancel::new() }
    }

    pub fn config(mut self, config: Config) -> Upload {
        self.config = config;
        self
    }

    /// The handle that cancels this upload.
    pub fn cancel_handle(&self) -> Cancel {
        self.cancel.clone()
    }

    /// Uses `cancel` (e.g. one shared with a signal handler).
    pub fn with_cancel(mut self, cancel: Cancel) -> Upload {
        self.cancel = cancel;
        self
    }

    pub fn image(&self) -> &crate::image::Image {
        &self.image
    }

    /// Runs the upload on this thread. `connect` opens the device; it is
    /// called again to reconnect after the device or the dext went away.
    /// `progress` is called at every completion and phase change.
    pub fn run<D, C, P>(&self, connect: C, progress: P) -> Result<Summary, UploadError>
    where
        D: StagingDevice,
        C: FnMut() -> Result<D, Error>,
        P: FnMut(&Progress),
    {
        pipeline::run(&self.image, &self.config, &self.cancel, connect, progress)
    }

    /// Runs the upload on a thread of its own. The handle is a `Future` of
    /// the result, offers a blocking `wait`, and cancels the upload when
    /// dropped unfinished.
    pub fn spawn<D, C, P>(self, connect: C, progress: P) -> UploadHandle
    where
        D: StagingDevice + 'static,
        C: FnMut() -> Result<D, Error> + Send + 'static,
        P: FnMut(&Progress) + Send + 'static,
    {
        spawn::spawn(self, connect, progress)
    }
}

//! The pipeline's loop: checksum the image, then per connection begin, keep
//! the ring's slots in flight, recover, and finish.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake as TaskWake, Waker};
use std::time::{Duration, Instant};

use zerocopy::FromBytes;

use super::{
    Acknowledgement, Cancel, Config, ImageIdentity, Phase, Progress, Retries, RetryKind,
    SlotFields, StagingDevice, Summary, UploadError, Verdict, rate, slot_crc32,
};
use crate::image::{Image, ImageReader};
use crate::{Error, IoReturn, Mapping, Pending, ReadWrite};

/// What wakes the pipeline's wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wake {
    /// A slot's completion may have arrived.
    Slot(u32),
    /// The upload was cancelled.
    Cancel,
}

/// The waker each slot's `Pending` is polled with: it names the slot on the
/// pipeline's channel, so one thread waits for any of N completions.
struct SlotWaker {
    slot: u32,
    sender: Sender<Wake>,
}

impl TaskWake for SlotWaker {
    fn wake(self: Arc<Self>) {
        // The pipeline may be gone already; then nobody needs waking.
        let _ = self.sender.send(Wake::Slot(self.slot));
    }
}

/// The ring as this upload uses it.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    slots: u32,
    /// Distance between slots: the schema's `SLOT_SIZE`.
    stride: usize,
    header_len: usize,
    /// Payload bytes per slot: the configured slot size minus the header.
    payload: usize,
}

impl Geometry {
    fn new<D: StagingDevice>(config: &Config) -> Result<Geometry, UploadError> {
        let header_len = std::mem::size_of::<D::Header>();
        let header_align = std::mem::align_of::<D::Header>();
        let slots = if config.slots == 0 { D::SLOT_COUNT } else { config.slots };
        if slots > D::SLOT_COUNT {
            return Err(UploadError::Config(format!(
                "{slots} slots asked for; the dext's ring has {}",
                D::SLOT_COUNT
            )));
        }
        let slot_size = if config.slot_size == 0 { D::SLOT_SIZE } else { config.slot_size };
        if slot_size > D::SLOT_SIZE || slot_size as usize <= header_len {
            return Err(UploadError::Config(format!(
                "a slot size of {slot_size} bytes does not fit: it must be more than the \
                 {header_len}-byte header and at most the dext's {} bytes",
                D::SLOT_SIZE
            )));
        }
        if !(D::SLOT_SIZE as usize).is_multiple_of(header_align) {
            return Err(UploadError::Config(format!(
                "the dext's slot size {} is not a multiple of the header's alignment {header_align}",
                D::SLOT_SIZE
            )));
        }
        Ok(Geometry {
            slots,
            stride: D::SLOT_SIZE as usize,
            header_len,
            payload: slot_size as usize - header_len,
        })
    }
}

/// A stretch of the image in a slot.
#[derive(Debug, Clone, Copy)]
struct Stretch {
    offset: u64,
    len: usize,
    /// CRC-32 of the payload alone (the header's covers the fields too).
    crc32: u32,
}

/// Retries of one stretch, by kind: each kind has its own bound.
#[derive(Debug, Default, Clone, Copy)]
struct Attempts {
    stall: u32,
    timeout: u32,
    aborted: u32,
    short: u32,
}

struct InFlight<S> {
    /// `None` while the submitter thread is still making the call.
    pending: Option<Pending<S>>,
    stretch: Stretch,
    attempts: Attempts,
}

/// What the submitter thread hands back for each slot: the call's result.
type Submissions<S> = Arc<Mutex<Vec<Option<Result<Pending<S>, Error>>>>>;

/// What polling a slot found.
enum Polled<S> {
    /// Nothing yet (or a wake for a submission since replaced).
    Waiting,
    /// The submit call itself failed: nothing is in flight on the slot.
    Refused(Error),
    /// The completion arrived.
    Completed(Result<S, Error>),
}

/// Why one connection's session ended without a summary.
enum Interrupted {
    /// The device or the dext went away: reconnect and resume.
    Lost(Error),
    /// Give up with this error.
    Failed(UploadError),
}

impl From<UploadError> for Interrupted {
    fn from(error: UploadError) -> Interrupted {
        Interrupted::Failed(error)
    }
}

/// Whether `error` means the device or the connection is gone.
fn is_lost(error: &Error) -> bool {
    matches!(error, Error::Disconnected)
        || error.io_return().is_some_and(|code| {
            code == IoReturn::NO_DEVICE
                || code == IoReturn::NOT_ATTACHED
                || code == IoReturn::NOT_RESPONDING
        })
}

/// The error of `operation`, sorted into lost or fatal.
fn interrupted(operation: &'static str, error: Error) -> Interrupted {
    if is_lost(&error) {
        Interrupted::Lost(error)
    } else {
        Interrupted::Failed(UploadError::Device { operation, source: error })
    }
}

/// Counters that live across connections.
#[derive(Debug)]
struct Run {
    identity: ImageIdentity,
    geometry: Geometry,
    session: u64,
    resumed_from: Option<u64>,
    sequence: u64,
    bytes_sent: u64,
    transfers: u64,
    /// Image bytes completed by this run (not counting resumed prefixes).
    completed: u64,
    retries: Retries,
    checksum_time: Duration,
    transfer_start: Option<Instant>,
    transfer_time: Duration,
    acknowledged: u64,
}

pub(super) fn run<D, C, P>(
    image: &Image,
    config: &Config,
    cancel: &Cancel,
    mut connect: C,
    mut progress: P,
) -> Result<Summary, UploadError>
where
    D: StagingDevice,
    C: FnMut() -> Result<D, Error>,
    P: FnMut(&Progress),
{
    let geometry = Geometry::new::<D>(config)?;
    let started = Instant::now();
    let identity = checksum(image, geometry.payload, cancel, &mut progress)?;
    let mut run = Run {
        identity,
        geometry,
        session: 0,
        resumed_from: None,
        sequence: 0,
        bytes_sent: 0,
        transfers: 0,
        completed: 0,
        retries: Retries::default(),
        checksum_time: started.elapsed(),
        transfer_start: None,
        transfer_time: Duration::ZERO,
        acknowledged: 0,
    };

    let mut device = connect().map_err(UploadError::Connect)?;
    let mut losses = 0u32;
    loop {
        let lost = match session(&device, image, config, cancel, &mut run, &mut progress) {
            Ok(summary) => return Ok(summary),
            Err(Interrupted::Failed(error)) => return Err(error),
            Err(Interrupted::Lost(error)) => error,
        };
        drop(device);
        losses += 1;
        if losses > config.max_reconnects {
            return Err(UploadError::TooManyDisconnects {
                times: losses,
                allowed: config.max_reconnects,
                last: lost,
            });
        }
        run.retries.count(RetryKind::Reconnect);
        device = reconnect(config, cancel, &mut connect, lost)?;
    }
}

/// Connects again after the device went away: waits, doubling the wait,
/// for at most [`Config::reconnect_attempts`] tries.
fn reconnect<D, C>(
    config: &Config,
    cancel: &Cancel,
    connect: &mut C,
    mut last: Error,
) -> Result<D, UploadError>
where
    C: FnMut() -> Result<D, Error>,
{
    let mut delay = config.reconnect_delay;
    for _ in 0..config.reconnect_attempts {
        if sleep_unless_cancelled(delay, cancel) {
            return Err(UploadError::Cancelled);
        }
        match connect() {
            Ok(device) => return Ok(device),
            Err(error) => last = error,
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
    Err(UploadError::Disconnected { attempts: config.reconnect_attempts, last })
}

/// Sleeps for `delay`, waking early if cancelled; returns whether it was.
fn sleep_unless_cancelled(delay: Duration, cancel: &Cancel) -> bool {
    let deadline = Instant::now() + delay;
    while !cancel.is_cancelled() {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(10)));
    }
    true
}

/// Reads the whole image once for its CRC-32, which names the image to the
/// device (so that an interrupted upload can resume) and is what `finish`
/// checks. Streams through one slot-sized buffer.
fn checksum<P: FnMut(&Progress)>(
    image: &Image,
    chunk: usize,
    cancel: &Cancel,
    progress: &mut P,
) -> Result<ImageIdentity, UploadError> {
    let total = image.len();
    let mut reader = image.reader()?;
    let mut buffer = vec![0u8; chunk.min(total as usize).max(1)];
    let mut hasher = crc32fast::Hasher::new();
    let started = Instant::now();
    let mut offset = 0u64;
    while offset < total {
        if cancel.is_cancelled() {
            return Err(UploadError::Cancelled);
        }
        let len = buffer.len().min((total - offset) as usize);
        reader.read_at(offset, &mut buffer[..len])?;
        hasher.update(&buffer[..len]);
        offset += len as u64;
        let elapsed = started.elapsed();
        progress(&Progress {
            phase: Phase::Checksum,
            total,
            done: offset,
            acknowledged: 0,
            resumed_from: 0,
            elapsed,
            bytes_per_second: rate(offset, elapsed),
            transfers: 0,
            retries: Retries::default(),
        });
    }
    Ok(ImageIdentity {
        total_len: total,
        load_address: image.load_address(),
        crc32: hasher.finalize(),
        format: image.format(),
    })
}

/// One connection: begin (or resume), transfer, finish.
fn session<D, P>(
    device: &D,
    image: &Image,
    config: &Config,
    cancel: &Cancel,
    run: &mut Run,
    progress: &mut P,
) -> Result<Summary, Interrupted>
where
    D: StagingDevice,
    P: FnMut(&Progress),
{
    let total = run.identity.total_len;
    report(progress, run, Phase::Connect, 0, Duration::ZERO);
    let begun = device.begin(&run.identity).map_err(|e| interrupted("begin", e))?;
    if begun.resume_offset > total {
        return Err(Interrupted::Failed(UploadError::Device {
            operation: "begin",
            source: Error::MalformedReply {
                method: "begin",
                detail: format!(
                    "resume offset {} is past the image's {total} bytes",
                    begun.resume_offset
                ),
            },
        }));
    }
    run.session = begun.session;
    run.resumed_from.get_or_insert(begun.resume_offset);
    run.acknowledged = begun.resume_offset;
    let transfer_start = *run.transfer_start.get_or_insert_with(Instant::now);

    if begun.resume_offset < total {
        let ring = device.ring().map_err(|e| interrupted("mapping the staging ring", e))?;
        let needed = run.geometry.slots as usize * run.geometry.stride;
        if ring.len() < needed {
            return Err(Interrupted::Failed(UploadError::Config(format!(
                "the dext's ring has {} bytes; {} slots of {} need {needed}",
                ring.len(),
                run.geometry.slots,
                run.geometry.stride
            ))));
        }
        let reader = image.reader().map_err(UploadError::from)?;
        let mut transfer = Transfer::new(device, ring, reader, config, cancel, run);
        transfer.run(begun.resume_offset, progress)?;
    }
    run.transfer_time = transfer_start.elapsed();

    report(progress, run, Phase::Verify, total, run.transfer_time);
    let verify_start = Instant::now();
    let verdict = device.finish(run.identity.crc32).map_err(|e| interrupted("finish", e))?;
    let verify_time = verify_start.elapsed();
    match verdict {
        Verdict::Committed => Ok(Summary {
            image: run.identity,
            session: run.session,
            resumed_from: run.resumed_from.unwrap_or(0),
            bytes_sent: run.bytes_sent,
            transfers: run.transfers,
            slots: run.geometry.slots,
            slot_size: (run.geometry.payload + run.geometry.header_len) as u32,
            checksum_time: run.checksum_time,
            transfer_time: run.transfer_time,
            verify_time,
            retries: run.retries,
        }),
        Verdict::Refused { reason } => Err(Interrupted::Failed(UploadError::Refused { reason })),
    }
}

fn report<P: FnMut(&Progress)>(
    progress: &mut P,
    run: &Run,
    phase: Phase,
    done: u64,
    elapsed: Duration,
) {
    progress(&Progress {
        phase,
        total: run.identity.total_len,
        done,
        acknowledged: run.acknowledged,
        resumed_from: run.resumed_from.unwrap_or(0),
        elapsed,
        bytes_per_second: rate(run.completed, elapsed),
        transfers: run.transfers,
        retries: run.retries,
    });
}

/// The transfer phase of one connection.
struct Transfer<'a, 'r, D: StagingDevice> {
    device: &'a D,
    ring: Mapping<'a, ReadWrite>,
    reader: ImageReader<'r>,
    config: &'a Config,
    cancel: &'a Cancel,
    run: &'a mut Run,
    wakes: Receiver<Wake>,
    sender: Sender<Wake>,
    wakers: Vec<Waker>,
    flights: Vec<Option<InFlight<D::Submitted>>>,
    free: Vec<u32>,
    /// Jobs for the submitter thread: (slot, bytes).
    jobs: Option<Sender<(u32, u32)>>,
    submissions: Submissions<D::Submitted>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each update is one assignment: a poisoned lock holds consistent data.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<'a, 'r, D: StagingDevice> Transfer<'a, 'r, D> {
    fn new(
        device: &'a D,
        ring: Mapping<'a, ReadWrite>,
        reader: ImageReader<'r>,
        config: &'a Config,
        cancel: &'a Cancel,
        run: &'a mut Run,
    ) -> Self {
        let (sender, wakes) = mpsc::channel();
        cancel.attach(sender.clone());
        let slots = run.geometry.slots;
        let wakers = (0..slots)
            .map(|slot| Waker::from(Arc::new(SlotWaker { slot, sender: sender.clone() })))
            .collect();
        Transfer {
            device,
            ring,
            reader,
            config,
            cancel,
            run,
            wakes,
            sender,
            wakers,
            flights: (0..slots).map(|_| None).collect(),
            // Popped from the end: slot 0 first.
            free: (0..slots).rev().collect(),
            jobs: None,
            submissions: Arc::new(Mutex::new((0..slots).map(|_| None).collect())),
        }
    }

    /// Keeps the slots busy until every stretch from `start` on is done.
    ///
    /// Submit calls go through a thread of their own, so that staging the
    /// next slot (reading the file, the CRC) overlaps the call's round trip
    /// to the dext: with a fast device, that round trip would otherwise be
    /// as long as the staging itself.
    fn run<P: FnMut(&Progress)>(
        &mut self,
        start: u64,
        progress: &mut P,
    ) -> Result<(), Interrupted> {
        let device = self.device;
        let submissions = Arc::clone(&self.submissions);
        let wake = self.sender.clone();
        let (jobs, queue) = mpsc::channel::<(u32, u32)>();
        self.jobs = Some(jobs);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                for (slot, len) in queue {
                    let result = device.submit(slot, len);
                    lock(&submissions)[slot as usize] = Some(result);
                    let _ = wake.send(Wake::Slot(slot));
                }
            });
            let result = self.transfer(start, progress);
            // Ends the submitter's queue; the scope waits for its last call.
            self.jobs = None;
            result
        })
    }

    fn transfer<P: FnMut(&Progress)>(
        &mut self,
        start: u64,
        progress: &mut P,
    ) -> Result<(), Interrupted> {
        let total = self.run.identity.total_len;
        let mut next = start;
        let mut done = start;
        let started = self.run.transfer_start.unwrap_or_else(Instant::now);
        loop {
            // Keep every free slot busy.
            while next < total {
                let Some(slot) = self.free.pop() else { break };
                let len = self.run.geometry.payload.min((total - next) as usize);
                let stretch = self.stage(slot, next, len)?;
                self.submit(slot, stretch, Attempts::default())?;
                next += len as u64;
            }
            if self.flights.iter().all(Option::is_none) {
                return Ok(());
            }
            let wake = match self.wakes.recv_timeout(self.config.watchdog) {
                Ok(wake) => wake,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.device.abort();
                    return Err(Interrupted::Lost(Error::Transport(format!(
                        "no completion from the device for {:?} with {} transfers in flight",
                        self.config.watchdog,
                        self.flights.iter().flatten().count()
                    ))));
                }
                // Unreachable: `self.sender` keeps the channel open.
                Err(RecvTimeoutError::Disconnected) => Wake::Cancel,
            };
            if wake == Wake::Cancel || self.cancel.is_cancelled() {
                self.abort_in_flight();
                return Err(Interrupted::Failed(UploadError::Cancelled));
            }
            let Wake::Slot(slot) = wake else { continue };
            let result = match self.poll(slot) {
                Polled::Waiting => continue,
                Polled::Refused(error) => return Err(interrupted("submit", error)),
                Polled::Completed(result) => result,
            };
            let flight = self.flights[slot as usize].take().expect("polled a slot in flight");
            if let Some(bytes) = self.completed(slot, flight, result)? {
                done += bytes;
                self.run.completed += bytes;
                let elapsed = started.elapsed();
                report(progress, self.run, Phase::Transfer, done, elapsed);
            }
        }
    }

    /// Polls slot `slot`: takes the submitter's result if it is back, then
    /// polls the completion with the slot's waker.
    fn poll(&mut self, slot: u32) -> Polled<D::Submitted> {
        let Some(Some(flight)) = self.flights.get_mut(slot as usize) else {
            return Polled::Waiting;
        };
        if flight.pending.is_none() {
            match lock(&self.submissions)[slot as usize].take() {
                None => return Polled::Waiting,
                Some(Err(error)) => return Polled::Refused(error),
                Some(Ok(pending)) => flight.pending = Some(pending),
            }
        }
        let pending = flight.pending.as_mut().expect("just set");
        let mut context = Context::from_waker(&self.wakers[slot as usize]);
        match Pin::new(pending).poll(&mut context) {
            Poll::Ready(result) => Polled::Completed(result),
            Poll::Pending => Polled::Waiting,
        }
    }

    /// Handles a completion; returns the image bytes it finished, if any.
    fn completed(
        &mut self,
        slot: u32,
        mut flight: InFlight<D::Submitted>,
        result: Result<D::Submitted, Error>,
    ) -> Result<Option<u64>, Interrupted> {
        let header_len = self.run.geometry.header_len;
        let stretch = flight.stretch;
        let code = match result {
            Ok(submitted) => {
                let Acknowledgement { transferred, acknowledged } = D::acknowledgement(&submitted);
                self.run.acknowledged = self.run.acknowledged.max(acknowledged);
                let transferred = transferred as usize;
                if transferred >= header_len + stretch.len {
                    self.free.push(slot);
                    return Ok(Some(stretch.len as u64));
                }
                // Short: the device took part of the slot. Send the rest.
                self.retry(&mut flight, RetryKind::Short, IoReturn::UNDERRUN)?;
                let taken = transferred.saturating_sub(header_len);
                let rest = if taken == 0 {
                    self.write_header(slot, stretch)?;
                    stretch
                } else {
                    self.restage_rest(slot, stretch, taken)?
                };
                self.submit(slot, rest, flight.attempts)?;
                return Ok(Some(taken as u64));
            }
            Err(error) => match error.io_return() {
                Some(code) if !is_lost(&error) => code,
                _ if is_lost(&error) => return Err(Interrupted::Lost(error)),
                _ => {
                    return Err(Interrupted::Failed(UploadError::Device {
                        operation: "submit",
                        source: error,
                    }));
                }
            },
        };
        let kind = if code.is_stall() {
            RetryKind::Stall
        } else if code == IoReturn::TIMEOUT {
            RetryKind::Timeout
        } else if code == IoReturn::ABORTED {
            RetryKind::Aborted
        } else {
            return Err(Interrupted::Failed(UploadError::Device {
                operation: "submit",
                source: Error::Completion { method: "submit", selector: 1, code },
            }));
        };
        self.retry(&mut flight, kind, code)?;
        // The payload is still in the slot; a fresh sequence number is all
        // the header needs.
        self.write_header(slot, stretch)?;
        self.submit(slot, stretch, flight.attempts)?;
        Ok(None)
    }

    /// Counts a retry of `flight`, failing when its kind's bound is passed.
    fn retry(
        &mut self,
        flight: &mut InFlight<D::Submitted>,
        kind: RetryKind,
        last: IoReturn,
    ) -> Result<(), Interrupted> {
        let config = self.config;
        let (count, bound) = match kind {
            RetryKind::Stall => (&mut flight.attempts.stall, config.max_stalls),
            RetryKind::Timeout => (&mut flight.attempts.timeout, config.max_timeouts),
            RetryKind::Aborted => (&mut flight.attempts.aborted, config.max_aborted),
            RetryKind::Short => (&mut flight.attempts.short, config.max_short),
            RetryKind::Reconnect => unreachable!("reconnects are counted per run"),
        };
        *count += 1;
        if *count > bound {
            return Err(Interrupted::Failed(UploadError::RetriesExhausted {
                kind,
                offset: flight.stretch.offset,
                attempts: *count,
                last,
            }));
        }
        self.run.retries.count(kind);
        Ok(())
    }

    /// Reads `len` image bytes at `offset` straight into slot `slot` after
    /// its header, then writes the header in place.
    fn stage(&mut self, slot: u32, offset: u64, len: usize) -> Result<Stretch, Interrupted> {
        let header_len = self.run.geometry.header_len;
        let base = slot as usize * self.run.geometry.stride;
        let payload = &mut self.ring.as_mut_slice()[base + header_len..base + header_len + len];
        self.reader.read_at(offset, payload).map_err(UploadError::from)?;
        let stretch = Stretch { offset, len, crc32: crc32fast::hash(payload) };
        self.write_header(slot, stretch)?;
        Ok(stretch)
    }

    /// After a short transfer that took `taken` payload bytes: moves the
    /// rest of the payload up behind the header and describes it.
    fn restage_rest(
        &mut self,
        slot: u32,
        stretch: Stretch,
        taken: usize,
    ) -> Result<Stretch, Interrupted> {
        let header_len = self.run.geometry.header_len;
        let base = slot as usize * self.run.geometry.stride + header_len;
        let payload = &mut self.ring.as_mut_slice()[base..base + stretch.len];
        payload.copy_within(taken.., 0);
        let rest_len = stretch.len - taken;
        let rest = Stretch {
            offset: stretch.offset + taken as u64,
            len: rest_len,
            crc32: crc32fast::hash(&payload[..rest_len]),
        };
        self.write_header(slot, rest)?;
        Ok(rest)
    }

    /// Writes slot `slot`'s header for `stretch`, through zerocopy, in the
    /// mapped slot itself.
    fn write_header(&mut self, slot: u32, stretch: Stretch) -> Result<(), Interrupted> {
        let header_len = self.run.geometry.header_len;
        let base = slot as usize * self.run.geometry.stride;
        let (sequence, length) = (self.run.sequence, stretch.len as u32);
        let fields = SlotFields {
            sequence,
            image_offset: stretch.offset,
            length,
            crc32: slot_crc32(sequence, stretch.offset, length, stretch.crc32),
        };
        self.run.sequence += 1;
        let bytes = &mut self.ring.as_mut_slice()[base..base + header_len];
        let header = D::Header::mut_from_bytes(bytes).map_err(|_| {
            UploadError::Config(format!("slot {slot} of the ring is misaligned for its header"))
        })?;
        *header = D::header(&fields);
        Ok(())
    }

    /// Hands slot `slot` to the submitter thread.
    fn submit(
        &mut self,
        slot: u32,
        stretch: Stretch,
        attempts: Attempts,
    ) -> Result<(), Interrupted> {
        let len = (self.run.geometry.header_len + stretch.len) as u32;
        self.run.transfers += 1;
        self.run.bytes_sent += stretch.len as u64;
        self.flights[slot as usize] = Some(InFlight { pending: None, stretch, attempts });
        let jobs = self.jobs.as_ref().expect("submitting inside `run`");
        // The submitter only stops when `run` drops `jobs`.
        let _ = jobs.send((slot, len));
        Ok(())
    }

    /// On cancel: stop the device's transfers and give them a moment to end.
    fn abort_in_flight(&mut self) {
        let _ = self.device.abort();
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.flights.iter().any(Option::is_some) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match self.wakes.recv_timeout(deadline - now) {
                Ok(Wake::Slot(slot)) => {
                    if !matches!(self.poll(slot), Polled::Waiting) {
                        self.flights[slot as usize] = None;
                    }
                }
                Ok(Wake::Cancel) => {}
                Err(_) => break,
            }
        }
    }
}

//! A simulated USB bulk OUT pipe: the simulator's `IOUSBHostPipe`.
//!
//! A dext model uploads through a [`BulkOutPipe`] as a real dext does
//! through `IOUSBHostPipe::AsyncIO` (docs/driverkit.md §6): each transfer names
//! a range of dext memory ([`IoBuffer`], an `IOMemoryDescriptor`) and a
//! [`Completion`] (`CompleteAsyncIO`). A thread of the pipe's own runs the
//! transfers one after another, in the order they were queued, and hands
//! each one's bytes to the [`BulkOutDevice`] on the far end.
//!
//! # Link time
//!
//! A [`LinkModel`] says how fast the wire is. Sleeps of the operating system
//! are coarse (tens of microseconds late, often far more), so the pipe keeps
//! a virtual clock instead of sleeping a transfer's duration each time:
//! `link_free_at = max(queued_at, link_free_at) + transfer_time(len)`, then
//! it sleeps until `link_free_at` and hands the bytes to the device. A
//! transfer queued while the link was busy starts when the link came free in
//! the model, not when the late-waking thread got to it, so a late wake-up is
//! made up by the transfers after it and throughput is exact in aggregate.
//! Time the device spends in [`BulkOutDevice::receive`] (its NAKs while its
//! buffers are full) and a timed-out transfer's wait are added to
//! `link_free_at`: back-pressure from a slow device slows the link. An
//! unthrottled link never sleeps.
//!
//! # Faults
//!
//! A [`FaultPlan`] (`--faults stall@3,short%2.5`) injects failures into
//! chosen transfers, as a pure function of a seed and the transfer's index,
//! so a failing run can be replayed exactly.
//!
//! # Rules and the tests that hold the pipe to them
//!
//! | docs/driverkit.md | rule | test |
//! |---|---|---|
//! | §6-4 | `Ok` means the completion will be called, exactly once; an error means never | `bad_lengths_are_bad_argument_and_never_complete`, `queue_beyond_max_in_flight_is_no_resources` |
//! | §6-4 | the length must be `<= dataBuffer->getLength()` | `bad_lengths_are_bad_argument_and_never_complete` |
//! | §6-4 | an error other than a timeout halts the pipe; `ClearStall` aborts all pending IO | `stall_fault_halts_until_clear_stall_aborts_the_queued`, `device_stall_halts_the_pipe`, `timeout_fault_does_not_halt` |
//! | §6-4 | a STALL that ends a transfer being aborted is reported as the stall (the pipe is halted) | `a_stall_during_an_abort_is_reported_as_the_stall_that_halted_the_pipe` |
//! | §6-1 | a timeout of 0 never times out | `abort_completes_everything_with_the_given_error` |
//! | §6-3 | `Abort` completes every pending transfer with the error given | `abort_completes_everything_with_the_given_error` |
//! | §6-7 | a stall completes with `kUSBHostReturnPipeStalled` | `stall_fault_halts_until_clear_stall_aborts_the_queued` |

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::SharedMemory;
use crate::IoReturn;

/// The largest packet of a high-speed bulk endpoint; a transfer cut short
/// by the `short` fault ends on a packet boundary where it can.
pub const MAX_PACKET_SIZE: usize = 512;

/// Link model of a bulk OUT pipe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkModel {
    pub name: &'static str,
    /// Payload bytes per second on the wire; `None` = unthrottled. (`Some(0)`
    /// is taken as unthrottled too, rather than as a link that never ends.)
    pub bytes_per_second: Option<u64>,
    /// Link time each transfer costs besides its bytes (scheduling, handshakes).
    pub per_transfer_overhead: Duration,
    /// Transfers the host controller queues on the pipe; `async_io` beyond it
    /// fails with `kIOReturnNoResources`. (docs/driverkit.md §6-6: the real limit
    /// is not published.)
    pub max_in_flight: usize,
}

impl LinkModel {
    /// USB 2.0 high speed at its theoretical bulk rate: 13 packets of 512
    /// bytes per 125 µs microframe = 53 248 000 B/s.
    pub const USB2: LinkModel = LinkModel {
        name: "usb2",
        bytes_per_second: Some(13 * 512 * 8000),
        per_transfer_overhead: Duration::from_micros(20),
        max_in_flight: 32,
    };
    /// USB 2.0 high speed as real hosts achieve it (~41 MB/s).
    pub const USB2_REAL: LinkModel = LinkModel {
        name: "usb2-real",
        bytes_per_second: Some(41_000_000),
        per_transfer_overhead: Duration::from_micros(20),
        max_in_flight: 32,
    };
    /// USB 3 SuperSpeed (5 Gb/s signalling, ~450 MB/s of bulk payload).
    pub const USB3: LinkModel = LinkModel {
        name: "usb3",
        bytes_per_second: Some(450_000_000),
        per_transfer_overhead: Duration::from_micros(5),
        max_in_flight: 32,
    };
    /// No link limit at all: the pipe never sleeps.
    pub const UNTHROTTLED: LinkModel = LinkModel {
        name: "fast",
        bytes_per_second: None,
        per_transfer_overhead: Duration::ZERO,
        max_in_flight: 32,
    };
    /// Every named profile, for `--link NAME`.
    pub const PROFILES: [LinkModel; 4] =
        [LinkModel::USB2, LinkModel::USB2_REAL, LinkModel::USB3, LinkModel::UNTHROTTLED];

    /// The profile called `name` (`usb2`, `usb2-real`, `usb3`, `fast`).
    pub fn by_name(name: &str) -> Option<LinkModel> {
        LinkModel::PROFILES.iter().find(|link| link.name == name).copied()
    }

    /// Modelled wire time of one transfer of `len` bytes: the overhead plus
    /// `len / rate`, rounded up to the nanosecond.
    pub fn transfer_time(&self, len: usize) -> Duration {
        let wire = match self.bytes_per_second {
            Some(rate) if rate > 0 => {
                let nanos = (len as u128 * 1_000_000_000).div_ceil(u128::from(rate));
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
            _ => Duration::ZERO,
        };
        self.per_transfer_overhead.saturating_add(wire)
    }

    fn is_throttled(&self) -> bool {
        !self.per_transfer_overhead.is_zero() || matches!(self.bytes_per_second, Some(r) if r > 0)
    }
}

/// The device on the far end of the pipe (its bulk OUT endpoint).
pub trait BulkOutDevice: Send + Sync + 'static {
    /// One transfer's bytes reached the device. May block (the device NAKs
    /// while its buffers are full; that back-pressure is how a slow device
    /// slows the link), but must return eventually: the pipe's thread waits
    /// for it, and so do `abort`, `clear_stall` and drop for the transfer in
    /// hand. Returns what it did with them.
    fn receive(&self, data: &[u8]) -> Receipt;
}

/// A device's answer to one transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// The device took this many bytes (≤ `data.len()`; more is taken as all).
    Accepted(usize),
    /// The device answered with a STALL handshake: the pipe halts.
    Stall,
}

/// A descriptor over dext memory (an `IOMemoryDescriptor` range, e.g. one
/// staging slot).
#[derive(Debug, Clone)]
pub struct IoBuffer {
    memory: Arc<SharedMemory>,
    offset: usize,
    len: usize,
}

impl IoBuffer {
    /// `len` bytes of `memory` from `offset`; `None` if they do not all lie
    /// inside it.
    pub fn new(memory: Arc<SharedMemory>, offset: usize, len: usize) -> Option<IoBuffer> {
        let end = offset.checked_add(len)?;
        (end <= memory.len()).then_some(IoBuffer { memory, offset, len })
    }

    /// The whole of `memory`.
    pub fn whole(memory: Arc<SharedMemory>) -> IoBuffer {
        let len = memory.len();
        IoBuffer { memory, offset: 0, len }
    }

    /// `getLength()`.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the range starts in its memory.
    pub fn offset(&self) -> usize {
        self.offset
    }

    pub fn memory(&self) -> &Arc<SharedMemory> {
        &self.memory
    }

    /// The first `len` bytes, read in place (`len` is at most `self.len`).
    fn bytes(&self, len: usize) -> &[u8] {
        let len = len.min(self.len);
        // SAFETY: `offset + len <= memory.len()` (checked in `new`), so the
        // range lies inside the mapping, which lives as long as `self.memory`
        // and so as long as the borrow of `self`. Bytes have no alignment or
        // validity requirement. While a transfer is queued its slot belongs
        // to the dext and the device (the staging protocol: a client writes a
        // slot again only after its submit completed), as memory under DMA
        // does on a Mac; a client breaking that protocol can change what the
        // device reads, as it could on real hardware.
        unsafe { std::slice::from_raw_parts(self.memory.as_ptr().as_ptr().add(self.offset), len) }
    }
}

/// `CompleteAsyncIO(action, status, actualByteCount, timestamp)` minus the
/// action and the timestamp.
pub type Completion = Box<dyn FnOnce(IoReturn, u32) + Send>;

/// The kinds of fault a [`FaultPlan`] injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The device answers with a STALL handshake: the pipe halts.
    Stall,
    /// The device never takes the transfer: it times out.
    Timeout,
    /// The device takes only the first part of the transfer.
    Short,
    /// The device goes away: every pending transfer fails, it comes back later.
    Disconnect,
    /// One bit of the transfer arrives flipped.
    BitFlip,
    /// The dext process dies.
    KillDext,
    /// The client process dies (applied by the upload tool, not the pipe).
    KillClient,
}

impl FaultKind {
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Stall,
        FaultKind::Timeout,
        FaultKind::Short,
        FaultKind::Disconnect,
        FaultKind::BitFlip,
        FaultKind::KillDext,
        FaultKind::KillClient,
    ];

    /// The kind's name in a fault spec (`kill-dext`).
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Stall => "stall",
            FaultKind::Timeout => "timeout",
            FaultKind::Short => "short",
            FaultKind::Disconnect => "disconnect",
            FaultKind::BitFlip => "bitflip",
            FaultKind::KillDext => "kill-dext",
            FaultKind::KillClient => "kill-client",
        }
    }

    pub fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// When a rule fires.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Trigger {
    /// On the transfer with this index.
    At(u64),
    /// On each transfer with this probability, in percent (0 < P ≤ 100).
    Percent(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct FaultRule {
    kind: FaultKind,
    trigger: Trigger,
}

/// Which transfers fail, and how: a list of rules and a seed.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    rules: Vec<FaultRule>,
    seed: u64,
}

/// A fault spec that does not parse; names the item, where it starts and
/// what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fault spec item `{item}` at column {column}: {problem}")]
pub struct FaultSpecError {
    /// The item's text, trimmed.
    pub item: String,
    /// 1-based column (in characters) of the item in the spec.
    pub column: usize,
    pub problem: String,
}

fn kind_list() -> String {
    let names: Vec<&str> = FaultKind::ALL.iter().map(|kind| kind.name()).collect();
    names.join(", ")
}

impl FaultPlan {
    /// No faults.
    pub fn none() -> FaultPlan {
        FaultPlan { rules: Vec::new(), seed: 0 }
    }

    /// Parses a fault spec. Items are separated by `,`; an item is
    /// `KIND@N` (the N-th transfer the pipe starts, 0-based, counting every
    /// attempt including resubmits) or `KIND%P` (each transfer with
    /// probability P percent, 0 < P ≤ 100, decimals allowed, decided from
    /// `seed`). KIND is one of `stall`, `timeout`, `short`, `disconnect`,
    /// `bitflip`, `kill-dext`, `kill-client`. Whitespace around items and
    /// their parts is allowed; an empty spec is no faults.
    pub fn parse(spec: &str, seed: u64) -> Result<FaultPlan, FaultSpecError> {
        let mut rules = Vec::new();
        if spec.trim().is_empty() {
            return Ok(FaultPlan { rules, seed });
        }
        let mut start = 0;
        for raw in spec.split(',') {
            let lead = raw.len() - raw.trim_start().len();
            let column = spec[..start + lead].chars().count() + 1;
            rules.push(parse_rule(raw.trim(), column)?);
            start += raw.len() + 1;
        }
        Ok(FaultPlan { rules, seed })
    }

    /// The fault for the transfer with `index`, a pure function of the seed
    /// and the index: the same seed gives the same faults. When several rules
    /// match, the first wins. Never [`FaultKind::KillClient`]: that one is
    /// the client's to apply ([`FaultPlan::client_kill_at`]).
    pub fn fault_for(&self, index: u64) -> Option<FaultKind> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| rule.kind != FaultKind::KillClient)
            .find(|(number, rule)| self.fires(rule, *number, index))
            .map(|(_, rule)| rule.kind)
    }

    /// Where a `kill-client@N` rule fires (the first such rule).
    pub fn client_kill_at(&self) -> Option<u64> {
        self.rules.iter().find_map(|rule| match (rule.kind, rule.trigger) {
            (FaultKind::KillClient, Trigger::At(n)) => Some(n),
            _ => None,
        })
    }

    /// Whether a `kill-client` rule (`@N` or `%P`) fires at the client's
    /// `index`-th transfer.
    pub fn kills_client_at(&self, index: u64) -> bool {
        self.rules.iter().enumerate().any(|(number, rule)| {
            rule.kind == FaultKind::KillClient && self.fires(rule, number, index)
        })
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn fires(&self, rule: &FaultRule, number: usize, index: u64) -> bool {
        match rule.trigger {
            Trigger::At(n) => n == index,
            Trigger::Percent(percent) => {
                let draw = mix(self.seed, index, number as u64);
                // 53 random bits as a fraction in [0, 1).
                let unit = (draw >> 11) as f64 / (1u64 << 53) as f64;
                unit * 100.0 < percent
            }
        }
    }
}

/// The spec that parses back into this plan (with the same seed).
impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rule) in self.rules.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match rule.trigger {
                Trigger::At(n) => write!(f, "{}@{n}", rule.kind)?,
                // `f64`'s Display is the shortest text that parses back to it.
                Trigger::Percent(p) => write!(f, "{}%{p}", rule.kind)?,
            }
        }
        Ok(())
    }
}

/// Parses a spec with seed 0.
impl FromStr for FaultPlan {
    type Err = FaultSpecError;

    fn from_str(spec: &str) -> Result<FaultPlan, FaultSpecError> {
        FaultPlan::parse(spec, 0)
    }
}

fn parse_rule(item: &str, column: usize) -> Result<FaultRule, FaultSpecError> {
    let error = |problem: String| FaultSpecError { item: item.to_string(), column, problem };
    let expected = || format!("expected KIND@N or KIND%P, with KIND one of {}", kind_list());
    if item.is_empty() {
        return Err(error(format!("empty item; {}", expected())));
    }
    let Some(at) = item.find(['@', '%']) else {
        return Err(error(format!("no `@` or `%`; {}", expected())));
    };
    let (name, value) = (item[..at].trim(), item[at + 1..].trim());
    let Some(kind) = FaultKind::from_name(name) else {
        return Err(error(format!("unknown fault kind `{name}`; expected one of {}", kind_list())));
    };
    let trigger = if item.as_bytes()[at] == b'@' {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(error(format!(
                "`{value}` is not a transfer index; expected digits after `@` ({kind}@3)"
            )));
        }
        let n = value.parse::<u64>().map_err(|_| {
            error(format!("transfer index `{value}` is too large; expected at most {}", u64::MAX))
        })?;
        Trigger::At(n)
    } else {
        let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        let percent = if whole.is_empty() && fraction.is_empty() {
            None
        } else if digits(whole) && digits(fraction) && !value.ends_with('.') {
            value.parse::<f64>().ok()
        } else {
            None
        };
        match percent {
            Some(p) if p > 0.0 && p <= 100.0 => Trigger::Percent(p),
            _ => {
                return Err(error(format!(
                    "`{value}` is not a percentage; expected a number above 0 and at most 100 \
                     after `%` ({kind}%2.5)"
                )));
            }
        }
    };
    Ok(FaultRule { kind, trigger })
}

/// splitmix64's finaliser: a well-mixed 64-bit value from any input.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A pseudo-random draw for (seed, transfer index, rule number).
fn mix(seed: u64, index: u64, salt: u64) -> u64 {
    splitmix(splitmix(splitmix(seed) ^ index) ^ salt)
}

/// Salt for the bit a `bitflip` flips (rule numbers are far below it).
const BITFLIP_SALT: u64 = u64::MAX;

/// How many bytes of a `len`-byte transfer the `short` fault delivers: half
/// of it, rounded down to whole 512-byte packets; a transfer under two
/// packets delivers half its bytes, rounded down (so 1 byte delivers none).
pub fn short_len(len: usize) -> usize {
    let half = len / 2;
    let packets = half / MAX_PACKET_SIZE * MAX_PACKET_SIZE;
    if packets > 0 { packets } else { half }
}

/// Faults a pipe injected, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub stall: u64,
    pub timeout: u64,
    pub short: u64,
    pub disconnect: u64,
    pub bitflip: u64,
    pub kill_dext: u64,
}

impl FaultCounts {
    /// The count for `kind` (always 0 for `KillClient`, which the pipe never injects).
    pub fn get(&self, kind: FaultKind) -> u64 {
        match kind {
            FaultKind::Stall => self.stall,
            FaultKind::Timeout => self.timeout,
            FaultKind::Short => self.short,
            FaultKind::Disconnect => self.disconnect,
            FaultKind::BitFlip => self.bitflip,
            FaultKind::KillDext => self.kill_dext,
            FaultKind::KillClient => 0,
        }
    }

    pub fn total(&self) -> u64 {
        FaultKind::ALL.iter().map(|&kind| self.get(kind)).sum()
    }

    fn bump(&mut self, kind: FaultKind) {
        let count = match kind {
            FaultKind::Stall => &mut self.stall,
            FaultKind::Timeout => &mut self.timeout,
            FaultKind::Short => &mut self.short,
            FaultKind::Disconnect => &mut self.disconnect,
            FaultKind::BitFlip => &mut self.bitflip,
            FaultKind::KillDext => &mut self.kill_dext,
            FaultKind::KillClient => return,
        };
        *count += 1;
    }
}

/// What a pipe has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipeStats {
    /// Transfers taken onto the wire (each is one fault index).
    pub transfers_started: u64,
    /// Completions called, whatever their status (counted just before the call).
    pub transfers_completed: u64,
    /// Bytes the device accepted.
    pub bytes_delivered: u64,
    /// Modelled link time: the sum of [`LinkModel::transfer_time`] of every
    /// transfer put on the wire. Not measured.
    pub link_busy: Duration,
    /// Measured time the device spent in [`BulkOutDevice::receive`].
    pub device_held: Duration,
    pub faults: FaultCounts,
}

/// A queued transfer.
struct Transfer {
    /// When `async_io` queued it: the earliest it can go on the wire.
    queued_at: Instant,
    buffer: IoBuffer,
    len: usize,
    timeout_ms: u32,
    completion: Completion,
}

/// What the pipe's API and its thread share, under one lock.
struct State {
    queue: VecDeque<Transfer>,
    /// Transfers taken off the queue by abort, clear_stall, disconnect or
    /// shutdown, each with its status, for the pipe's thread to complete in
    /// order (completions run on the pipe's thread only).
    finished: VecDeque<(Completion, IoReturn)>,
    /// A transfer is in the pipe thread's hands.
    on_wire: bool,
    /// The transfer in hand was aborted with this error.
    wire_abort: Option<IoReturn>,
    halted: bool,
    connected: bool,
    /// When a disconnected device comes back; `None` = not by itself.
    reconnect_at: Option<Instant>,
    reconnect_delay: Duration,
    generation: u64,
    shutdown: bool,
    next_index: u64,
    stats: PipeStats,
}

impl State {
    /// Applies a reconnect that is due.
    fn refresh(&mut self, now: Instant) {
        if !self.connected && self.reconnect_at.is_some_and(|at| now >= at) {
            self.reconnect();
        }
    }

    fn reconnect(&mut self) {
        self.connected = true;
        self.reconnect_at = None;
        self.halted = false;
        self.generation += 1;
    }

    /// Ends every pending transfer with `status`: the queued ones go to
    /// `finished`, the one in hand is marked.
    fn take_pending(&mut self, status: IoReturn) {
        let queued = self.queue.drain(..).map(|transfer| (transfer.completion, status));
        self.finished.extend(queued);
        if self.on_wire && self.wire_abort.is_none() {
            self.wire_abort = Some(status);
        }
    }

    fn disconnect(&mut self, now: Instant) {
        self.take_pending(IoReturn::NO_DEVICE);
        self.connected = false;
        self.halted = false;
        self.reconnect_at = now.checked_add(self.reconnect_delay);
    }
}

type KillHook = Arc<dyn Fn() + Send + Sync>;

struct Shared {
    link: LinkModel,
    faults: FaultPlan,
    device: Arc<dyn BulkOutDevice>,
    state: Mutex<State>,
    /// Wakes the pipe's thread: new work, an abort, a shutdown.
    wake: Condvar,
    kill_hook: Mutex<Option<KillHook>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the state consistent, so a panic
    // elsewhere (a device model that panicked) does not make it unusable.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The owner of the pipe's thread; the last handle dropping it shuts down.
struct PipeInner {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl PipeInner {
    fn shutdown(&self) {
        {
            let mut state = lock(&self.shared.state);
            if !state.shutdown {
                state.shutdown = true;
                state.take_pending(IoReturn::ABORTED);
            }
            self.shared.wake.notify_all();
        }
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            // Called from a completion (the pipe's own thread), it cannot
            // wait for itself: the thread ends once the completion returns.
            if thread.thread().id() != thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for PipeInner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A bulk OUT pipe (`IOUSBHostPipe`). Cloning gives another handle to the
/// same pipe; when the last handle goes, the pipe shuts down: every transfer
/// still pending completes with `kIOReturnAborted` and its thread is joined.
///
/// Completions run on the pipe's thread, outside every lock the pipe takes,
/// so a completion may queue the next transfer or clear a stall. A
/// completion should hold a [`WeakBulkOutPipe`] rather than a handle: a
/// handle inside a queued completion keeps the pipe alive.
#[derive(Clone)]
pub struct BulkOutPipe {
    inner: Arc<PipeInner>,
}

/// A handle that does not keep the pipe alive, for completions.
#[derive(Clone)]
pub struct WeakBulkOutPipe {
    inner: Weak<PipeInner>,
}

impl WeakBulkOutPipe {
    /// The pipe, unless every handle is gone.
    pub fn upgrade(&self) -> Option<BulkOutPipe> {
        self.inner.upgrade().map(|inner| BulkOutPipe { inner })
    }
}

impl fmt::Debug for WeakBulkOutPipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakBulkOutPipe").finish_non_exhaustive()
    }
}

impl fmt::Debug for BulkOutPipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.inner.shared.state);
        f.debug_struct("BulkOutPipe")
            .field("link", &self.inner.shared.link.name)
            .field("faults", &self.inner.shared.faults.to_string())
            .field("connected", &state.connected)
            .field("halted", &state.halted)
            .field("generation", &state.generation)
            .field("queued", &state.queue.len())
            .finish_non_exhaustive()
    }
}

impl BulkOutPipe {
    /// A pipe over `link` to `device`, with `faults` injected. If the pipe's
    /// thread cannot be started, the pipe starts shut down: every `async_io`
    /// fails with `kIOReturnNotAttached`.
    pub fn new(link: LinkModel, faults: FaultPlan, device: Arc<dyn BulkOutDevice>) -> BulkOutPipe {
        let shared = Arc::new(Shared {
            link,
            faults,
            device,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                finished: VecDeque::new(),
                on_wire: false,
                wire_abort: None,
                halted: false,
                connected: true,
                reconnect_at: None,
                reconnect_delay: Duration::from_millis(50),
                generation: 0,
                shutdown: false,
                next_index: 0,
                stats: PipeStats::default(),
            }),
            wake: Condvar::new(),
            kill_hook: Mutex::new(None),
        });
        let runner = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name(format!("dextlink-usb-{}", link.name))
            .spawn(move || runner.run());
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(_) => {
                lock(&shared.state).shutdown = true;
                None
            }
        };
        BulkOutPipe { inner: Arc::new(PipeInner { shared, thread: Mutex::new(thread) }) }
    }

    /// How long the device stays away after a `disconnect` fault (or
    /// [`BulkOutPipe::disconnect`]) before it reappears; 50 ms by default.
    pub fn with_reconnect_delay(self, delay: Duration) -> BulkOutPipe {
        lock(&self.inner.shared.state).reconnect_delay = delay;
        self
    }

    pub fn downgrade(&self) -> WeakBulkOutPipe {
        WeakBulkOutPipe { inner: Arc::downgrade(&self.inner) }
    }

    pub fn link(&self) -> LinkModel {
        self.inner.shared.link
    }

    pub fn faults(&self) -> &FaultPlan {
        &self.inner.shared.faults
    }

    /// `IOUSBHostPipe::AsyncIO`: queues `len` bytes from the start of
    /// `buffer`. `Ok` means `completion` will be called exactly once, later,
    /// on the pipe's thread (docs/driverkit.md §6-4: "kIOReturnSuccess if the
    /// completion will be called in the future"). On an error it is never
    /// called:
    ///
    /// - the pipe was shut down: `kIOReturnNotAttached`;
    /// - `len` is 0 or more than `buffer.len()`: `kIOReturnBadArgument`
    ///   (§6-4: "Must be <= dataBuffer->getLength()");
    /// - the device is disconnected: `kIOReturnNoDevice`;
    /// - `max_in_flight` transfers are queued already: `kIOReturnNoResources`.
    ///
    /// `timeout_ms` only matters to a transfer the device never takes (the
    /// `timeout` fault); 0 means no timeout (§6-1). A halted pipe queues the
    /// transfer, which waits: `ClearStall` aborts it with the rest of the
    /// pending IO (§6-4), or `abort` ends it.
    pub fn async_io(
        &self,
        buffer: &IoBuffer,
        len: u32,
        timeout_ms: u32,
        completion: Completion,
    ) -> Result<(), IoReturn> {
        let shared = &self.inner.shared;
        let mut state = lock(&shared.state);
        if state.shutdown {
            return Err(IoReturn::NOT_ATTACHED);
        }
        let len = usize::try_from(len).map_err(|_| IoReturn::BAD_ARGUMENT)?;
        if len == 0 || len > buffer.len() {
            return Err(IoReturn::BAD_ARGUMENT);
        }
        state.refresh(Instant::now());
        if !state.connected {
            return Err(IoReturn::NO_DEVICE);
        }
        if state.queue.len() + usize::from(state.on_wire) >= shared.link.max_in_flight {
            return Err(IoReturn::NO_RESOURCES);
        }
        let queued_at = Instant::now();
        let transfer = Transfer { queued_at, buffer: buffer.clone(), len, timeout_ms, completion };
        state.queue.push_back(transfer);
        shared.wake.notify_all();
        Ok(())
    }

    /// `IOUSBHostPipe::Abort`: every queued transfer, and the one on the
    /// wire, completes with `with_error` and 0 bytes (docs/driverkit.md §6-3
    /// says to pass `kIOReturnAborted`). Does not wait for the completions
    /// (`kAbortAsynchronous`); they run on the pipe's thread, in order,
    /// before any transfer queued after this call. A transfer the device is
    /// receiving at that moment completes as aborted once `receive` returns,
    /// though its bytes may have reached the device, as on real hardware.
    pub fn abort(&self, with_error: IoReturn) {
        let shared = &self.inner.shared;
        lock(&shared.state).take_pending(with_error);
        shared.wake.notify_all();
    }

    /// `ClearStall`: all pending IO on the endpoint is aborted
    /// (`kIOReturnAborted`), then the halt is cleared (docs/driverkit.md §6-4).
    pub fn clear_stall(&self) {
        let shared = &self.inner.shared;
        let mut state = lock(&shared.state);
        state.take_pending(IoReturn::ABORTED);
        state.halted = false;
        shared.wake.notify_all();
    }

    /// Unplugs the device now, as the `disconnect` fault does: every pending
    /// transfer completes with `kIOReturnNoDevice` and the device reappears
    /// after the reconnect delay.
    pub fn disconnect(&self) {
        let shared = &self.inner.shared;
        let mut state = lock(&shared.state);
        if !state.shutdown {
            state.disconnect(Instant::now());
        }
        shared.wake.notify_all();
    }

    /// Plugs a disconnected device back in now (a new generation).
    pub fn reconnect(&self) {
        let mut state = lock(&self.inner.shared.state);
        if !state.connected && !state.shutdown {
            state.reconnect();
        }
    }

    /// Whether a stall halted the pipe (until [`BulkOutPipe::clear_stall`]).
    pub fn is_halted(&self) -> bool {
        lock(&self.inner.shared.state).halted
    }

    pub fn is_connected(&self) -> bool {
        let mut state = lock(&self.inner.shared.state);
        state.refresh(Instant::now());
        state.connected
    }

    /// Increments each time the device reappears after a disconnect; a
    /// dext's user clients for an older generation are terminated (calls on
    /// them fail with `kIOReturnNotAttached`). Starts at 0.
    pub fn generation(&self) -> u64 {
        let mut state = lock(&self.inner.shared.state);
        state.refresh(Instant::now());
        state.generation
    }

    /// Runs when a `kill-dext` fault fires (the server binary sets it to
    /// kill its own process). Without a hook, or if the hook returns, the
    /// fault acts as a disconnect.
    pub fn set_kill_dext_hook(&self, hook: Box<dyn Fn() + Send + Sync>) {
        *lock(&self.inner.shared.kill_hook) = Some(Arc::from(hook));
    }

    pub fn stats(&self) -> PipeStats {
        lock(&self.inner.shared.state).stats
    }

    /// Stops the pipe now, as dropping the last handle does: every pending
    /// transfer completes with `kIOReturnAborted`, later `async_io` calls
    /// fail with `kIOReturnNotAttached`, and the thread is joined (unless
    /// this is called from a completion, on that thread).
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}

/// What the pipe's thread does next.
enum Step {
    /// Call these completions, with 0 bytes.
    Complete(VecDeque<(Completion, IoReturn)>),
    /// Put this transfer on the wire.
    Run(Transfer, Option<FaultKind>, u64),
    /// Call these completions, then end.
    Exit(VecDeque<(Completion, IoReturn)>),
}

/// The pipe thread's model of the wire (see the module docs).
#[derive(Default)]
struct LinkClock {
    /// When the wire finishes what it has been given; `None` before the first transfer.
    free_at: Option<Instant>,
}

impl LinkClock {
    /// Books the wire for `cost` for a transfer ready since `ready_at`;
    /// returns when the transfer leaves the wire.
    fn book(&mut self, ready_at: Instant, cost: Duration) -> Instant {
        let start = self.free_at.map_or(ready_at, |free| free.max(ready_at));
        let end = start.checked_add(cost).unwrap_or(start);
        self.free_at = Some(end);
        end
    }

    /// The device held the wire for `held` past where the model had it.
    fn hold(&mut self, held: Duration) {
        if let Some(free) = &mut self.free_at {
            *free = free.checked_add(held).unwrap_or(*free);
        }
    }

    /// The wire carried nothing else until `until`.
    fn busy_until(&mut self, until: Option<Instant>) {
        let until = until.unwrap_or_else(Instant::now);
        self.free_at = Some(self.free_at.map_or(until, |free| free.max(until)));
    }
}

impl Shared {
    /// The pipe's thread.
    fn run(&self) {
        let mut clock = LinkClock::default();
        loop {
            match self.next_step() {
                Step::Complete(finished) => {
                    for (completion, status) in finished {
                        completion(status, 0);
                    }
                }
                Step::Run(transfer, fault, index) => {
                    self.run_transfer(transfer, fault, index, &mut clock)
                }
                Step::Exit(finished) => {
                    for (completion, status) in finished {
                        completion(status, 0);
                    }
                    return;
                }
            }
        }
    }

    fn next_step(&self) -> Step {
        let mut state = lock(&self.state);
        loop {
            if !state.finished.is_empty() {
                let finished = std::mem::take(&mut state.finished);
                state.stats.transfers_completed += finished.len() as u64;
                return Step::Complete(finished);
            }
            if state.shutdown {
                state.take_pending(IoReturn::ABORTED);
                let finished = std::mem::take(&mut state.finished);
                state.stats.transfers_completed += finished.len() as u64;
                return Step::Exit(finished);
            }
            state.refresh(Instant::now());
            if state.connected
                && !state.halted
                && let Some(transfer) = state.queue.pop_front()
            {
                let index = state.next_index;
                state.next_index += 1;
                state.on_wire = true;
                state.wire_abort = None;
                state.stats.transfers_started += 1;
                let fault = self.faults.fault_for(index);
                if let Some(kind) = fault {
                    state.stats.faults.bump(kind);
                }
                return Step::Run(transfer, fault, index);
            }
            state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn run_transfer(
        &self,
        transfer: Transfer,
        fault: Option<FaultKind>,
        index: u64,
        clock: &mut LinkClock,
    ) {
        let Transfer { queued_at, buffer, len, timeout_ms, completion } = transfer;
        let (status, bytes) = match fault {
            Some(FaultKind::Stall) => (IoReturn::USB_HOST_PIPE_STALLED, 0),
            Some(FaultKind::Timeout) => {
                let deadline = match timeout_ms {
                    0 => None, // No timeout (docs/driverkit.md §6-1): wait for an abort.
                    ms => Instant::now().checked_add(Duration::from_millis(u64::from(ms))),
                };
                let outcome = match self.wait_on_wire(deadline) {
                    Some(error) => (error, 0),
                    None => (IoReturn::TIMEOUT, 0),
                };
                // The host retried the transfer until then: nothing else
                // went on the wire.
                clock.busy_until(deadline.filter(|_| outcome.0 == IoReturn::TIMEOUT));
                outcome
            }
            Some(FaultKind::Disconnect) => {
                lock(&self.state).disconnect(Instant::now());
                (IoReturn::NO_DEVICE, 0)
            }
            Some(FaultKind::KillDext) => {
                let hook = lock(&self.kill_hook).clone();
                if let Some(hook) = hook {
                    hook();
                }
                // Still here: the dext's IO is gone as if the device left.
                lock(&self.state).disconnect(Instant::now());
                (IoReturn::NO_DEVICE, 0)
            }
            Some(FaultKind::Short) => match short_len(len) {
                0 => (IoReturn::SUCCESS, 0),
                n => self.deliver(buffer.bytes(n), queued_at, clock),
            },
            Some(FaultKind::BitFlip) => {
                let mut copy = buffer.bytes(len).to_vec();
                let bit = mix(self.faults.seed(), index, BITFLIP_SALT) % (len as u64 * 8);
                copy[(bit / 8) as usize] ^= 1 << (bit % 8);
                self.deliver(&copy, queued_at, clock)
            }
            None | Some(FaultKind::KillClient) => self.deliver(buffer.bytes(len), queued_at, clock),
        };
        let (status, bytes) = {
            let mut state = lock(&self.state);
            state.on_wire = false;
            let abort = state.wire_abort.take();
            state.stats.transfers_completed += 1;
            if status == IoReturn::USB_HOST_PIPE_STALLED {
                // Any error but a timeout halts a bulk endpoint (§6-4); the
                // only one a device causes is its STALL. The STALL ended the
                // transfer even when an abort came while it was on the wire:
                // the completion says so, because a dext clears the halt only
                // when it sees a stall, and a halt reported as an abort would
                // leave the pipe halted for good (every later transfer waits).
                state.halted = true;
                (status, 0)
            } else {
                match abort {
                    Some(error) => (error, 0),
                    None => (status, bytes),
                }
            }
        };
        completion(status, u32::try_from(bytes).unwrap_or(u32::MAX));
    }

    /// Waits until `deadline` (`None`: for ever) unless the transfer in
    /// hand is aborted first; returns the abort's error if it was.
    fn wait_on_wire(&self, deadline: Option<Instant>) -> Option<IoReturn> {
        let mut state = lock(&self.state);
        loop {
            if let Some(error) = state.wire_abort {
                return Some(error);
            }
            if state.shutdown {
                return Some(IoReturn::ABORTED);
            }
            match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    state = self
                        .wake
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                None => state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }

    /// Puts `data` on the wire, then hands it to the device.
    fn deliver(&self, data: &[u8], queued_at: Instant, clock: &mut LinkClock) -> (IoReturn, usize) {
        let cost = self.link.transfer_time(data.len());
        if self.link.is_throttled() {
            let end = clock.book(queued_at, cost);
            if let Some(error) = self.wait_on_wire(Some(end)) {
                clock.busy_until(Some(Instant::now()));
                return (error, 0);
            }
        }
        lock(&self.state).stats.link_busy += cost;
        let started = Instant::now();
        let receipt = self.device.receive(data);
        let held = started.elapsed();
        // The device takes the next transfer's packets while it deals with
        // this one (double buffering): only the part of `receive` beyond one
        // transfer's wire time held the link (NAKs). So the link runs at the
        // slower of its rate and the device's. A late wake-up of the sleep
        // above is not charged either (the next transfer makes it up).
        clock.hold(held.saturating_sub(cost));
        let mut state = lock(&self.state);
        state.stats.device_held += held;
        match receipt {
            Receipt::Accepted(n) => {
                let n = n.min(data.len());
                state.stats.bytes_delivered += n as u64;
                (IoReturn::SUCCESS, n)
            }
            Receipt::Stall => (IoReturn::USB_HOST_PIPE_STALLED, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::mpsc;

    use super::*;

    /// A device that records what it receives. With a gate, `receive`
    /// reports each entry and waits for a token before it returns.
    #[derive(Default)]
    struct TestDevice {
        got: Mutex<Vec<Vec<u8>>>,
        gate: Option<Gate>,
        /// Answer STALL to this many transfers first.
        stalls: AtomicUsize,
    }

    struct Gate {
        entered: Mutex<mpsc::Sender<usize>>,
        release: Mutex<mpsc::Receiver<()>>,
    }

    impl TestDevice {
        /// A gated device, the channel telling which transfer (by count)
        /// entered `receive`, and the sender of release tokens.
        fn gated() -> (Arc<TestDevice>, mpsc::Receiver<usize>, mpsc::Sender<()>) {
            let (entered_tx, entered) = mpsc::channel();
            let (release, release_rx) = mpsc::channel();
            let gate = Gate { entered: Mutex::new(entered_tx), release: Mutex::new(release_rx) };
            (Arc::new(TestDevice { gate: Some(gate), ..TestDevice::default() }), entered, release)
        }

        fn got(&self) -> Vec<Vec<u8>> {
            lock(&self.got).clone()
        }
    }

    impl BulkOutDevice for TestDevice {
        fn receive(&self, data: &[u8]) -> Receipt {
            let count = {
                let mut got = lock(&self.got);
                got.push(data.to_vec());
                got.len() - 1
            };
            if let Some(gate) = &self.gate {
                let _ = lock(&gate.entered).send(count);
                // A dropped sender releases every transfer.
                let _ = lock(&gate.release).recv();
            }
            let stall =
                self.stalls.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if stall.is_ok() { Receipt::Stall } else { Receipt::Accepted(data.len()) }
        }
    }

    type Done = (usize, IoReturn, u32);

    fn done(tx: &mpsc::Sender<Done>, id: usize) -> Completion {
        let tx = tx.clone();
        Box::new(move |status, bytes| {
            let _ = tx.send((id, status, bytes));
        })
    }

    /// Memory filled with a pattern that differs between neighbouring bytes.
    fn memory(len: usize) -> Arc<SharedMemory> {
        let memory = SharedMemory::new(len).unwrap();
        let pattern: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        assert!(memory.write(0, &pattern));
        Arc::new(memory)
    }

    fn slice(memory: &Arc<SharedMemory>, offset: usize, len: usize) -> IoBuffer {
        IoBuffer::new(Arc::clone(memory), offset, len).unwrap()
    }

    fn pipe(plan: &str, device: &Arc<TestDevice>) -> BulkOutPipe {
        let faults = FaultPlan::parse(plan, 7).unwrap();
        BulkOutPipe::new(LinkModel::UNTHROTTLED, faults, Arc::clone(device) as _)
    }

    fn recv(rx: &mpsc::Receiver<Done>) -> Done {
        rx.recv_timeout(Duration::from_secs(20)).expect("a completion arrives")
    }

    /// Waits for a condition the pipe's thread makes true (synchronising on
    /// state; the limit only keeps a broken pipe from hanging the test).
    fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
        let limit = Instant::now() + Duration::from_secs(20);
        while !condition() {
            assert!(Instant::now() < limit, "never happened: {what}");
            thread::sleep(Duration::from_micros(200));
        }
    }

    #[test]
    fn transfers_complete_in_fifo_order_with_exact_bytes() {
        let device = Arc::new(TestDevice::default());
        let pipe = pipe("", &device);
        let mem = memory(64 * 1024);
        let (tx, rx) = mpsc::channel();
        let ranges: Vec<(usize, usize)> =
            (0..12).map(|i| (i * 4093 % 60_000, 1 + i * 389)).collect();
        for (id, &(offset, len)) in ranges.iter().enumerate() {
            let buffer = slice(&mem, offset, len + 100);
            pipe.async_io(&buffer, len as u32, 0, done(&tx, id)).unwrap();
        }
        for (id, &(_, len)) in ranges.iter().enumerate() {
            assert_eq!(recv(&rx), (id, IoReturn::SUCCESS, len as u32));
        }
        let expected: Vec<Vec<u8>> =
            ranges.iter().map(|&(offset, len)| mem.read(offset, len).unwrap()).collect();
        assert_eq!(device.got(), expected);
        let stats = pipe.stats();
        assert_eq!(stats.transfers_started, 12);
        assert_eq!(stats.transfers_completed, 12);
        assert_eq!(stats.bytes_delivered, ranges.iter().map(|r| r.1 as u64).sum::<u64>());
        assert_eq!(stats.link_busy, Duration::ZERO, "an unthrottled link costs nothing");
    }

    #[test]
    fn stall_fault_halts_until_clear_stall_aborts_the_queued() {
        let (device, entered, release) = TestDevice::gated();
        let pipe = pipe("stall@1", &device);
        let mem = memory(4096);
        let (tx, rx) = mpsc::channel();
        pipe.async_io(&slice(&mem, 0, 100), 100, 0, done(&tx, 0)).unwrap();
        assert_eq!(entered.recv().unwrap(), 0, "transfer 0 is with the device");
        for id in 1..4 {
            pipe.async_io(&slice(&mem, id * 100, 100), 100, 0, done(&tx, id)).unwrap();
        }
        release.send(()).unwrap();
        assert_eq!(recv(&rx), (0, IoReturn::SUCCESS, 100));
        assert_eq!(recv(&rx), (1, IoReturn::USB_HOST_PIPE_STALLED, 0));
        assert!(pipe.is_halted());
        // Halted before its completion ran: nothing after it started.
        assert_eq!(pipe.stats().transfers_started, 2);
        assert_eq!(pipe.stats().faults.stall, 1);

        pipe.clear_stall();
        assert_eq!(recv(&rx), (2, IoReturn::ABORTED, 0));
        assert_eq!(recv(&rx), (3, IoReturn::ABORTED, 0));
        assert!(!pipe.is_halted());
        release.send(()).unwrap();
        pipe.async_io(&slice(&mem, 1000, 50), 50, 0, done(&tx, 4)).unwrap();
        assert_eq!(recv(&rx), (4, IoReturn::SUCCESS, 50));
        assert_eq!(device.got(), vec![mem.read(0, 100).unwrap(), mem.read(1000, 50).unwrap()]);
    }

    #[test]
    fn device_stall_halts_the_pipe() {
        let device = Arc::new(TestDevice { stalls: AtomicUsize::new(1), ..TestDevice::default() });
        let pipe = pipe("", &device);
        let mem = memory(1024);
        let (tx, rx) = mpsc::channel();
        pipe.async_io(&slice(&mem, 0, 10), 10, 0, done(&tx, 0)).unwrap();
        assert_eq!(recv(&rx), (0, IoReturn::USB_HOST_PIPE_STALLED, 0));
        assert!(pipe.is_halted());
        assert!(IoReturn::USB_HOST_PIPE_STALLED.is_stall());
        // A halted pipe queues; the transfer waits for clear_stall, which aborts it.
        pipe.async_io(&slice(&mem, 0, 10), 10, 0, done(&tx, 1)).unwrap();
        assert_eq!(pipe.stats().transfers_started, 1);
        pipe.clear_stall();
        assert_eq!(recv(&rx), (1, IoReturn::ABORTED, 0));
        pipe.async_io(&slice(&mem, 0, 10), 10, 0, done(&tx, 2)).unwrap();
        assert_eq!(recv(&rx), (2, IoReturn::SUCCESS, 10));
        assert_eq!(pipe.stats().faults.total(), 0, "the device's stall is no injected fault");
    }

    #[test]
    fn timeout_fault_does_not_halt() {
        let device = Arc::new(TestDevice::default());
        let pipe = pipe("timeout@0", &device);
        let mem = memory(1024);
        let (tx, rx) = mpsc::channel();
        pipe.async_io(&slice(&mem, 0, 64), 64, 1, done(&tx, 0)).unwrap();
        pipe.async_io(&slice(&mem, 64, 64), 64, 1, done(&tx, 1)).unwrap();
        assert_eq!(recv(&rx), (0, IoReturn::TIMEOUT, 0));
        assert_eq!(recv(&rx), (1, IoReturn::SUCCESS, 64));
        assert!(!pipe.is_halted(), "a timeout does not halt a bulk pipe (§6-4)");
        assert_eq!(device.got(), vec![mem.read(64, 64).unwrap()]);
        assert_eq!(pipe.stats().faults.timeout, 1);
    }

    #[test]
    fn short_fault_delivers_the_documented_prefix() {
        assert_eq!(short_len(4096), 2048);
        assert_eq!(short_len(3000), 1024);
        assert_eq!(short_len(1024), 512);
        assert_eq!(short_len(700), 350);
        assert_eq!(short_len(1), 0);
        let device = Arc::new(TestDevice::default());
        let pipe = pipe("short@0,short@1", &device);
        let mem = memory(4096);
        let (tx, rx) = mpsc::channel();
        pipe.async_io(&slice(&mem, 10, 3000), 3000, 0, done(&tx, 0)).unwrap();
        pipe.async_io(&slice(&mem, 0, 1), 1, 0, done(&tx, 1)).unwrap();
        assert_eq!(recv(&rx), (0, IoReturn::SUCCESS, 1024));
        assert_eq!(recv(&rx), (1, IoReturn::SUCCESS, 0));
        assert_eq!(device.got(), vec![mem.read(10, 1024).unwrap()]);
        assert_eq!(pipe.stats().bytes_delivered, 1024);
        assert_eq!(pipe.stats().faults.short, 2);
    }

    #[test]
    fn bitflip_fault_flips_exactly_one_bit_of_a_copy() {
        let device = Arc::new(TestDevice::default());
        let pipe = pipe("bitflip@0", &device);
        let mem = memory(8192);
        let before = mem.read(0, 8192).unwrap();
        let (tx, rx) = mpsc::channel();
        pipe.async_io(&slice(&mem, 0, 8192), 8192, 0, done(&tx, 0)).unwrap();
        assert_eq!(recv(&rx), (0, IoReturn::SUCCESS, 8192));
        let got = device.got().remove(0);
        let flipped: u32 = got.iter().zip(&before).map(|(a, b)| (a ^ b).count_ones()).sum();
        assert_eq!(flipped, 1);
        assert_eq!(mem.read(0, 8192).unwrap(), before, "the dext's memory is untouched");
        assert_eq!(pipe.stats().faults.bitflip, 1);
    }

    #[test]
    fn disconnect_fails_queued_io_refuses_new_io_and_bumps_generation() {
        let (device, entered, release) = TestDevice::gated();
        let faults = FaultPlan::parse("disconnect@1", 1).unwrap();
        let pipe = BulkOutPipe::new(LinkModel::UNTHROTTLED, faults, Arc::clone(&device) as _)
            .with_reconnect_delay(Duration::from_secs(3600));
        let mem = memory(1024);
        let (tx, rx) = mpsc::channel();
        pipe.async_io(&slice(&mem, 0, 8), 8, 0, done(&tx, 0)).unwrap();
        assert_eq!(entered.recv().unwrap(), 0);
        pipe.async_io(&slice(&mem, 0, 8), 8, 0, done(&tx, 1)).unwrap();
        pipe.async_io(&slice(&mem, 0, 8), 8, 0, done(&tx, 2)).unwrap();
        release.send(()).unwrap();
        assert_eq!(recv(&rx), (0, IoReturn::SUCCESS, 8));
        assert_eq!(recv(&rx), (1, IoReturn::NO_DEVICE, 0));
        assert_eq!(recv(&rx), (2, IoReturn::NO_DEVICE, 0));
        assert!(!pipe.is_connected());
        assert_eq!(pipe.generation(), 0);
        let refused = pipe.async_io(&slice(&mem, 0, 8), 8, 0, done(&tx, 3));
        assert_eq!(refused, Err(IoReturn::NO_DEVICE));

        pipe.reconnect();
        assert!(pipe.is_connected());
        assert_eq!(pipe.generation(), 1);
        release.send(()).unwrap();
        pipe.async_io(&slice(&mem, 8, 8), 8, 0, done(&tx, 4)).unwrap();
        assert_eq!(recv(&rx), (4, IoReturn::SUCCESS, 8));
        assert_eq!(device.got().len(), 2);
        assert_eq!(pipe.stats().faults.disconnect, 1);
    }

    #[test]
    fn a_disconnected_device_reappears_after_the_delay() {
        let device = Arc::new(TestDevice::default());
        let faults = FaultPlan::parse("disconnect@0", 1).unwrap();
        let pipe = BulkOutPipe::new(LinkModel::UNTHROTTLED, faults, Arc::clone(&device) as _)
            .with_reconnect_delay(Duration::from_millis(1));
        let mem = memory(1024);
        let (tx, rx) = mpsc::channel();
        pipe.async_io(&slice(&mem, 0, 8), 8, 0, done(&tx, 0)).unwrap();
        assert_eq!(recv(&rx), (0, IoReturn::NO_DEVICE, 0));
        wait_for("the device reappears", || pipe.generation() == 1);
        pipe.async_io(&slice(&mem, 0, 8), 8, 0, done(&tx, 1)).unwrap();
        assert_eq!(recv(&rx), (1, IoReturn::SUCCESS, 8));
    }

    #[test]
    fn kill_dext_fault_calls_the_hook_then_acts_as_a_disconnect() {
        let device = Arc::new(TestDevice::default());
        let pipe = pipe("kill-dext@1", &device).with_reconnect_delay(Duration::from_secs(3600));
        let (killed_tx, killed) = mpsc::channel();
        let killed_tx = Mutex::new(killed_tx);
        pipe.set_kill_dext_hook(Box::new(move || {
            let _ = lock(&killed_tx).send(());
        }));
        let mem = memory(1024);
        let (tx, rx) = mpsc::channel();
        pipe.async_io(&slice(&mem, 0, 8), 8, 0, done(&tx, 0)).unwrap();
        pipe.async_io(&slice(&mem, 0, 8), 8, 0, done(&tx, 1)).unwrap();
        assert_eq!(recv(&rx), (0, IoReturn::SUCCESS, 8));
        assert_eq!(recv(&rx), (1, IoReturn::NO_DEVICE, 0));
        assert_eq!(killed.try_recv(), Ok(()), "the hook ran before the completion");
        assert_eq!(killed.try_recv(), Err(mpsc::TryRecvError::Empty), "once");
        assert_eq!(device.got().len(), 1, "the killed transfer never reached the device");
        assert!(!pipe.is_connected());
        assert_eq!(pipe.stats().faults.kill_dext, 1);
    }

    #[test]
    fn kill_dext_without_a_hook_is_a_disconnect() {
        let device = Arc::new(TestDevice::default());
        let pipe = pipe("kill-dext@0", &device).with_reconnect_delay(Duration::from_secs(3600));
        let mem = memory(1024);
        let (tx, rx) = mpsc::channel();
        pipe.async_io(&slice(&mem, 0, 8), 8, 0, done(&tx, 0)).unwrap();
        assert_eq!(recv(&rx), (0, IoReturn::NO_DEVICE, 0));
        assert!(!pipe.is_connected());
        assert!(device.got().is_empty());
    }

    #[test]
    fn queue_beyond_max_in_flight_is_no_resources() {
        let (device, entered, release) = TestDevice::gated();
        let link = LinkModel { max_in_flight: 2, ..LinkModel::UNTHROTTLED };
        let pipe = BulkOutPipe::new(link, FaultPlan::none(), Arc::clone(&device) as _);
        let mem = memory(1024);
        let (tx, rx) = mpsc::channel();
        pipe.async_io(&slice(&mem, 0, 8), 8, 0, done(&tx, 0)).unwrap();
        assert_eq!(entered.recv().unwrap(), 0);
        pipe.async_io(&slice(&mem, 0, 8), 8, 0, done(&tx, 1)).unwrap();
        let refused = pipe.async_io(&slice(&mem, 0, 8), 8, 0, done(&tx, 2));
        assert_eq!(refused, Err(IoReturn::NO_RESOURCES));
        release.send(()).unwrap();
        release.send(()).unwrap();
        assert_eq!(recv(&rx).0, 0);
        assert_eq!(recv(&rx).0, 1);
        drop(pipe);
        assert!(rx.try_recv().is_err(), "the refused transfer never completes");
    }

    #[test]
    fn bad_lengths_are_bad_argument_and_never_complete() {
        let device = Arc::new(TestDevice::default());
        let pipe = pipe("", &device);
        let mem = memory(1024);
        let called = Arc::new(AtomicBool::new(false));
        let completion = || -> Completion {
            let called = Arc::clone(&called);
            Box::new(move |_, _| called.store(true, Ordering::SeqCst))
        };
        let buffer = slice(&mem, 512, 256);
        assert_eq!(pipe.async_io(&buffer, 0, 0, completion()), Err(IoReturn::BAD_ARGUMENT));
        assert_eq!(pipe.async_io(&buffer, 257, 0, completion()), Err(IoReturn::BAD_ARGUMENT));
        assert!(IoBuffer::new(Arc::clone(&mem), 1000, 25).is_none());
        assert!(IoBuffer::new(Arc::clone(&mem), usize::MAX, 2).is_none());
        drop(pipe); // joins the thread: any completion would have run by now
        assert!(!called.load(Ordering::SeqCst));
        assert!(device.got().is_empty());
    }

    #[test]
    fn abort_completes_everything_with_the_given_error() {
        let device = Arc::new(TestDevice::default());
        // Transfer 0 is never taken and has no timeout (0, §6-1): it hangs.
        let pipe = pipe("timeout@0", &device);
        let mem = memory(1024);
        let (tx, rx) = mpsc::channel();
        for id in 0..3 {
            pipe.async_io(&slice(&mem, 0, 16), 16, 0, done(&tx, id)).unwrap();
        }
        wait_for("transfer 0 is on the wire", || pipe.stats().transfers_started == 1);
        pipe.abort(IoReturn::NOT_RESPONDING);
        for id in 0..3 {
            assert_eq!(recv(&rx), (id, IoReturn::NOT_RESPONDING, 0));
        }
        assert!(!pipe.is_halted());
        pipe.async_io(&slice(&mem, 0, 16), 16, 0, done(&tx, 3)).unwrap();
        assert_eq!(recv(&rx), (3, IoReturn::SUCCESS, 16));
        assert_eq!(device.got().len(), 1);
    }

    /// A transfer the device STALLs while an abort is under way completes as
    /// a stall, not as aborted: the pipe is halted, and only a dext that sees
    /// the stall clears it. (Reported as aborted, the halt outlived the
    /// upload that caused it, and every later transfer waited for ever.)
    #[test]
    fn a_stall_during_an_abort_is_reported_as_the_stall_that_halted_the_pipe() {
        let (device, entered, release) = TestDevice::gated();
        device.stalls.store(1, Ordering::SeqCst);
        let pipe = pipe("", &device);
        let mem = memory(1024);
        let (tx, rx) = mpsc::channel();
        pipe.async_io(&slice(&mem, 0, 16), 16, 0, done(&tx, 0)).unwrap();
        pipe.async_io(&slice(&mem, 16, 16), 16, 0, done(&tx, 1)).unwrap();
        assert_eq!(entered.recv_timeout(Duration::from_secs(20)), Ok(0));
        // The device is inside `receive` with transfer 0 and will STALL it.
        pipe.abort(IoReturn::ABORTED);
        release.send(()).unwrap();
        let mut completions = [recv(&rx), recv(&rx)];
        completions.sort_by_key(|(id, ..)| *id);
        assert_eq!(
            completions,
            [(0, IoReturn::USB_HOST_PIPE_STALLED, 0), (1, IoReturn::ABORTED, 0)]
        );
        assert!(pipe.is_halted());
        // The dext clears it, as it does on every stall, and IO flows again.
        pipe.clear_stall();
        pipe.async_io(&slice(&mem, 0, 16), 16, 0, done(&tx, 2)).unwrap();
        release.send(()).unwrap();
        assert_eq!(recv(&rx), (2, IoReturn::SUCCESS, 16));
    }

    #[test]
    fn dropping_the_pipe_aborts_everything_and_joins_the_thread() {
        let device = Arc::new(TestDevice::default());
        let pipe = pipe("timeout@0", &device);
        let mem = memory(1024);
        let (tx, rx) = mpsc::channel();
        for id in 0..3 {
            pipe.async_io(&slice(&mem, 0, 16), 16, 0, done(&tx, id)).unwrap();
        }
        let clone = pipe.clone();
        drop(pipe);
        assert_eq!(Arc::strong_count(&device), 2, "a clone keeps the pipe running");
        drop(clone);
        assert_eq!(Arc::strong_count(&device), 1, "the pipe's thread let go of the device");
        let all: Vec<Done> = rx.try_iter().collect();
        assert_eq!(all, (0..3).map(|id| (id, IoReturn::ABORTED, 0)).collect::<Vec<_>>());
    }

    #[test]
    fn a_shut_down_pipe_refuses_io_as_not_attached() {
        let device = Arc::new(TestDevice::default());
        let pipe = pipe("", &device);
        let mem = memory(1024);
        pipe.shutdown();
        let (tx, _rx) = mpsc::channel();
        let refused = pipe.async_io(&slice(&mem, 0, 8), 8, 0, done(&tx, 0));
        assert_eq!(refused, Err(IoReturn::NOT_ATTACHED));
    }

    #[test]
    fn a_completion_may_resubmit_and_clear_a_stall() {
        let device = Arc::new(TestDevice { stalls: AtomicUsize::new(1), ..TestDevice::default() });
        let pipe = pipe("", &device);
        let mem = memory(1024);
        let buffer = slice(&mem, 0, 32);
        let (tx, rx) = mpsc::channel();
        let weak = pipe.downgrade();
        let retry_buffer = buffer.clone();
        let retry_tx = tx.clone();
        let first: Completion = Box::new(move |status, _| {
            let pipe = weak.upgrade().unwrap();
            assert!(status.is_stall());
            pipe.clear_stall();
            let resubmitted = pipe.async_io(&retry_buffer, 32, 0, done(&retry_tx, 1));
            let _ = retry_tx.send((0, status, u32::from(resubmitted.is_ok())));
        });
        pipe.async_io(&buffer, 32, 0, first).unwrap();
        assert_eq!(recv(&rx), (0, IoReturn::USB_HOST_PIPE_STALLED, 1));
        assert_eq!(recv(&rx), (1, IoReturn::SUCCESS, 32));
        assert_eq!(pipe.stats().transfers_started, 2);
    }

    #[test]
    fn a_throttled_links_busy_time_is_the_sum_of_transfer_times() {
        let device = Arc::new(TestDevice::default());
        let link = LinkModel::USB3;
        let pipe = BulkOutPipe::new(link, FaultPlan::none(), Arc::clone(&device) as _);
        let mem = memory(256 * 1024);
        let (tx, rx) = mpsc::channel();
        let lens = [65_536, 1, 512, 100_000, 4096, 65_535];
        for (id, &len) in lens.iter().enumerate() {
            pipe.async_io(&slice(&mem, 0, len), len as u32, 0, done(&tx, id)).unwrap();
        }
        for (id, &len) in lens.iter().enumerate() {
            assert_eq!(recv(&rx), (id, IoReturn::SUCCESS, len as u32));
        }
        let expected: Duration = lens.iter().map(|&len| link.transfer_time(len)).sum();
        let stats = pipe.stats();
        assert_eq!(stats.link_busy, expected);
        assert_eq!(stats.bytes_delivered, lens.iter().map(|&l| l as u64).sum::<u64>());
    }

    #[test]
    fn handles_can_be_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<BulkOutPipe>();
        send_sync::<WeakBulkOutPipe>();
        send_sync::<IoBuffer>();
    }

    #[test]
    fn transfer_time_follows_rate_and_overhead() {
        let usb2 = LinkModel::USB2;
        assert_eq!(usb2.bytes_per_second, Some(53_248_000));
        assert_eq!(
            usb2.transfer_time(53_248_000),
            Duration::from_secs(1) + Duration::from_micros(20)
        );
        // 512 B at 53.248 MB/s = 9615.38… ns, rounded up.
        assert_eq!(usb2.transfer_time(512), Duration::from_nanos(20_000 + 9_616));
        assert_eq!(usb2.transfer_time(0), Duration::from_micros(20));
        assert_eq!(LinkModel::USB3.transfer_time(450_000), Duration::from_micros(1005));
        assert_eq!(LinkModel::UNTHROTTLED.transfer_time(1 << 30), Duration::ZERO);
        let zero_rate = LinkModel { bytes_per_second: Some(0), ..LinkModel::UNTHROTTLED };
        assert_eq!(zero_rate.transfer_time(1000), Duration::ZERO);
        for link in LinkModel::PROFILES {
            assert_eq!(LinkModel::by_name(link.name), Some(link));
        }
        assert_eq!(LinkModel::by_name("usb4"), None);
    }

    #[test]
    fn fault_plans_parse_the_grammar_and_round_trip() {
        let plan = FaultPlan::parse(
            " stall@3 , timeout%2.5,short@0,disconnect%100, bitflip@18446744073709551615,\
             kill-dext%0.001,kill-client@7 ",
            42,
        )
        .unwrap();
        let text = plan.to_string();
        assert_eq!(
            text,
            "stall@3,timeout%2.5,short@0,disconnect%100,bitflip@18446744073709551615,\
             kill-dext%0.001,kill-client@7"
        );
        assert_eq!(FaultPlan::parse(&text, 42).unwrap(), plan);
        assert_eq!(plan.seed(), 42);
        assert!(!plan.is_empty());
        assert!(FaultPlan::parse("  ", 1).unwrap().is_empty());
        assert_eq!(FaultPlan::parse("", 1).unwrap().to_string(), "");
        assert_eq!("stall@1".parse::<FaultPlan>().unwrap().fault_for(1), Some(FaultKind::Stall));
        assert_eq!(FaultPlan::parse("stall @ 1", 0).unwrap().to_string(), "stall@1");
    }

    #[test]
    fn fault_plans_reject_bad_items_naming_the_column() {
        let cases = [
            ("stall@1,stal@2", "stal@2", 9, "unknown fault kind `stal`"),
            ("stall@1, ,short@2", "", 10, "empty item"),
            ("stall@1,", "", 9, "empty item"),
            ("stall", "stall", 1, "no `@` or `%`"),
            ("stall@x", "stall@x", 1, "not a transfer index"),
            ("stall@-1", "stall@-1", 1, "not a transfer index"),
            ("short@99999999999999999999", "short@99999999999999999999", 1, "too large"),
            ("short%0", "short%0", 1, "not a percentage"),
            ("short%100.5", "short%100.5", 1, "not a percentage"),
            ("short%1e2", "short%1e2", 1, "not a percentage"),
            ("short%NaN", "short%NaN", 1, "not a percentage"),
            ("short%5.", "short%5.", 1, "not a percentage"),
            ("\u{a0}stall@1,x@1", "x@1", 10, "unknown fault kind `x`"),
        ];
        for (spec, item, column, problem) in cases {
            let error = FaultPlan::parse(spec, 0).unwrap_err();
            assert_eq!((error.item.as_str(), error.column), (item, column), "{spec}");
            let message = error.to_string();
            assert!(message.contains(problem), "{spec}: {message}");
            assert!(message.contains(&format!("column {column}")), "{message}");
        }
        let message = FaultPlan::parse("stal@2", 0).unwrap_err().to_string();
        assert!(message.contains(&kind_list()), "{message}");
        assert!(message.contains("kill-client"), "{message}");
    }

    #[test]
    fn percent_faults_are_a_function_of_the_seed() {
        let draw = |seed| {
            let plan = FaultPlan::parse("short%50", seed).unwrap();
            (0..512).map(|i| plan.fault_for(i)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        let hits = draw(1).iter().filter(|f| f.is_some()).count();
        assert!((128..384).contains(&hits), "about half of 512: {hits}");
        let always = FaultPlan::parse("stall%100", 9).unwrap();
        assert!((0..100).all(|i| always.fault_for(i) == Some(FaultKind::Stall)));
    }

    #[test]
    fn the_first_matching_rule_wins_and_kill_client_is_the_clients() {
        let plan = FaultPlan::parse("kill-client@2,short@2,stall%100", 3).unwrap();
        assert_eq!(plan.fault_for(2), Some(FaultKind::Short));
        assert_eq!(plan.fault_for(5), Some(FaultKind::Stall));
        assert_eq!(plan.client_kill_at(), Some(2));
        assert!(plan.kills_client_at(2));
        assert!(!plan.kills_client_at(3));
        let only_client = FaultPlan::parse("kill-client@0", 3).unwrap();
        assert_eq!(only_client.fault_for(0), None);
        assert_eq!(FaultPlan::none().client_kill_at(), None);
    }
}

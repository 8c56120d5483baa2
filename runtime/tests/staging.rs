//! The staging pipeline against a scripted dext (the fwloader schema over the
//! in-process simulator): what lands on the device, out-of-order
//! completions, each recovery path with its own counter and bound, resume,
//! cancellation, and bad configurations. `examples/fwloader` runs the same
//! pipeline against the simulated USB device and flash.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use dextlink::image::{Format, Image};
use dextlink::server::Arguments;
use dextlink::sim::{ClientMemory, InProcess, SharedMemory, UserClient};
use dextlink::staging::{
    Acknowledgement, Begun, Cancel, Config, ImageIdentity, Phase, RetryKind, SlotFields,
    StagingDevice, Upload, UploadError, Verdict,
};
use dextlink::{Error, IoReturn, Mapping, Pending, ReadWrite, Transport};
use zerocopy::FromBytes;

dextlink::interface!("../examples/fwloader/fwloader.dextlink");

use fw_loader::{
    BeginOutput, FwLoader, ImageInfo, SLOT_COUNT, SLOT_SIZE, SlotHeader, Status, SubmitCompleter,
    SubmitCompletion, UploadState,
};

const HEADER: usize = std::mem::size_of::<SlotHeader>();

// ----- the client side: the fwloader schema as a StagingDevice ---------------

impl<T: Transport> StagingDevice for FwLoader<T> {
    type Header = SlotHeader;
    type Submitted = SubmitCompletion;
    const SLOT_COUNT: u32 = SLOT_COUNT;
    const SLOT_SIZE: u32 = SLOT_SIZE;

    fn header(fields: &SlotFields) -> SlotHeader {
        SlotHeader {
            sequence: fields.sequence,
            image_offset: fields.image_offset,
            length: fields.length,
            crc32: fields.crc32,
        }
    }

    fn acknowledgement(done: &SubmitCompletion) -> Acknowledgement {
        Acknowledgement { transferred: done.transferred, acknowledged: done.acknowledged }
    }

    fn ring(&self) -> Result<Mapping<'_, ReadWrite>, Error> {
        self.staging()
    }

    fn begin(&self, image: &ImageIdentity) -> Result<Begun, Error> {
        let mut info = ImageInfo::zeroed();
        info.total_len = image.total_len;
        info.load_address = image.load_address;
        info.image_crc32 = image.crc32;
        let begun = FwLoader::begin(self, &info)?;
        Ok(Begun { session: begun.session, resume_offset: begun.resume_offset })
    }

    fn submit(&self, slot: u32, len: u32) -> Result<Pending<SubmitCompletion>, Error> {
        FwLoader::submit(self, slot, len)
    }

    fn finish(&self, image_crc32: u32) -> Result<Verdict, Error> {
        match FwLoader::finish(self, image_crc32)? {
            Status::Committed => Ok(Verdict::Committed),
            other => Ok(Verdict::Refused { reason: format!("status {other:?}") }),
        }
    }

    fn abort(&self) -> Result<(), Error> {
        FwLoader::abort(self)
    }
}

// ----- the dext side: a scripted device ---------------------------------------

/// What the scripted device does with the transfer of this index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Stall,
    Timeout,
    /// Another slot's stall was cleared.
    Aborted,
    /// Takes only this many bytes of the slot.
    Short(u32),
    /// The device goes away: this and every later call fail until a new connection.
    Lose,
    /// Holds the completion until `abort` (a device that stops answering).
    Hang,
}

#[derive(Debug, Default)]
struct Device {
    image: Vec<u8>,
    total_len: u64,
    crc32: u32,
    /// Image bytes received, by offset, for the acknowledged prefix.
    received: BTreeMap<u64, u64>,
    /// The prefix programmed in order.
    acknowledged: u64,
    /// What `begin` answers as the resume offset (a device that kept a prefix).
    resume_offset: u64,
    script: BTreeMap<u64, Act>,
    transfers: u64,
    /// Transfer indices in the order their completions were sent.
    completion_order: Vec<u64>,
    /// Completions held for the release thread, in submission order.
    held: VecDeque<(u64, SubmitCompleter, Result<SubmitCompletion, IoReturn>)>,
    hung: Vec<SubmitCompleter>,
    /// Connections made; a `Lose` ends the current one.
    generation: u64,
    header_errors: Vec<String>,
    finishes: u32,
    aborts: u32,
    sequences: Vec<u64>,
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    device: Mutex<Device>,
    changed: Condvar,
    memory: Mutex<Option<Arc<SharedMemory>>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Device> {
        self.device.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn memory(&self) -> Arc<SharedMemory> {
        let mut memory = self.memory.lock().unwrap();
        Arc::clone(memory.get_or_insert_with(|| {
            Arc::new(SharedMemory::new((SLOT_COUNT * SLOT_SIZE) as usize).unwrap())
        }))
    }
}

/// Releases held completions newest first, so that they arrive out of order.
fn release_loop(shared: Arc<Shared>) {
    let mut device = shared.lock();
    loop {
        if device.closed {
            return;
        }
        if device.held.is_empty() {
            device = shared.changed.wait(device).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        if device.held.len() == 1 {
            // Give others a moment to pile up behind it.
            device = shared
                .changed
                .wait_timeout(device, Duration::from_millis(2))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        while let Some((index, completer, result)) = device.held.pop_back() {
            device.completion_order.push(index);
            match result {
                Ok(values) => completer.complete(values),
                Err(code) => completer.fail(code),
            }
        }
    }
}

struct Client {
    shared: Arc<Shared>,
    generation: u64,
}

impl Client {
    fn lost(&self, device: &Device) -> bool {
        device.generation != self.generation
    }
}

impl fw_loader::Handler for Client {
    fn begin(&mut self, info: &ImageInfo) -> Result<BeginOutput, IoReturn> {
        let mut device = self.shared.lock();
        if self.lost(&device) {
            return Err(IoReturn::NOT_ATTACHED);
        }
        if device.total_len != info.total_len || device.crc32 != info.image_crc32 {
            device.image = vec![0; info.total_len as usize];
            device.received.clear();
            device.acknowledged = 0;
        }
        device.total_len = info.total_len;
        device.crc32 = info.image_crc32;
        let resume_offset = device.resume_offset.min(device.acknowledged);
        Ok(BeginOutput { session: device.generation, resume_offset })
    }

    fn submit(&mut self, slot: u32, len: u32, completion: SubmitCompleter) -> Result<(), IoReturn> {
        let memory = self.shared.memory();
        let mut device = self.shared.lock();
        if self.lost(&device) {
            return Err(IoReturn::NOT_ATTACHED);
        }
        let index = device.transfers;
        device.transfers += 1;
        let base = slot as usize * SLOT_SIZE as usize;
        let bytes = memory.read(base, len as usize).ok_or(IoReturn::BAD_ARGUMENT)?;
        let act = device.script.get(&index).copied();
        let taken = match act {
            None => len as usize,
            Some(Act::Short(n)) => (n as usize).min(len as usize),
            Some(Act::Hang) => {
                device.hung.push(completion);
                return Ok(());
            }
            Some(Act::Lose) => {
                device.generation += 1;
                let hung = std::mem::take(&mut device.hung);
                drop(device);
                completion.fail(IoReturn::NO_DEVICE);
                for completer in hung {
                    completer.fail(IoReturn::NO_DEVICE);
                }
                return Ok(());
            }
            Some(Act::Stall) => {
                return self.hold(device, index, completion, IoReturn::USB_HOST_PIPE_STALLED);
            }
            Some(Act::Timeout) => return self.hold(device, index, completion, IoReturn::TIMEOUT),
            Some(Act::Aborted) => return self.hold(device, index, completion, IoReturn::ABORTED),
        };
        if taken >= HEADER {
            let header = SlotHeader::read_from_bytes(&bytes[..HEADER]).unwrap();
            device.sequences.push(header.sequence);
            let payload = &bytes[HEADER..taken];
            let full = taken == bytes.len();
            if header.length as usize != bytes.len() - HEADER {
                device
                    .header_errors
                    .push(format!("transfer {index}: header {header:?}, len {len}"));
            } else if full && {
                // The header's first 20 bytes, then the payload, hashed
                // directly: an independent check of `slot_crc32`.
                let mut crc = crc32fast::Hasher::new();
                crc.update(&bytes[..20]);
                crc.update(payload);
                crc.finalize() != header.crc32
            } {
                device.header_errors.push(format!("transfer {index}: CRC mismatch"));
            } else {
                let offset = header.image_offset as usize;
                device.image[offset..offset + payload.len()].copy_from_slice(payload);
                device.received.insert(header.image_offset, payload.len() as u64);
                let mut acknowledged = device.acknowledged;
                while let Some(len) = device.received.get(&acknowledged) {
                    acknowledged += len.max(&1);
                }
                device.acknowledged = acknowledged;
            }
        }
        let values =
            SubmitCompletion { transferred: taken as u32, acknowledged: device.acknowledged };
        device.held.push_back((index, completion, Ok(values)));
        self.shared.changed.notify_all();
        Ok(())
    }

    fn finish(&mut self, image_crc32: u32) -> Result<Status, IoReturn> {
        let mut device = self.shared.lock();
        if self.lost(&device) {
            return Err(IoReturn::NOT_ATTACHED);
        }
        device.finishes += 1;
        let good = device.acknowledged == device.total_len
            && crc32fast::hash(&device.image) == image_crc32
            && image_crc32 == device.crc32;
        Ok(if good { Status::Committed } else { Status::Failed })
    }

    fn status(&mut self) -> Result<UploadState, IoReturn> {
        Ok(UploadState::zeroed())
    }

    fn write(&mut self, _: u64, _: &[u8]) -> Result<u64, IoReturn> {
        Err(IoReturn::UNSUPPORTED)
    }

    fn abort(&mut self) -> Result<(), IoReturn> {
        let mut device = self.shared.lock();
        device.aborts += 1;
        let hung = std::mem::take(&mut device.hung);
        for completer in hung {
            completer.fail(IoReturn::ABORTED);
        }
        Ok(())
    }
}

impl Client {
    fn hold(
        &self,
        mut device: MutexGuard<'_, Device>,
        index: u64,
        completion: SubmitCompleter,
        code: IoReturn,
    ) -> Result<(), IoReturn> {
        device.held.push_back((index, completion, Err(code)));
        self.shared.changed.notify_all();
        Ok(())
    }
}

impl UserClient for Client {
    fn external_method(&mut self, selector: u64, arguments: &mut Arguments<'_>) -> IoReturn {
        fw_loader::dispatch(self, selector, arguments)
    }

    fn copy_client_memory(&mut self, memory_type: u64) -> Result<ClientMemory, IoReturn> {
        match memory_type {
            0 => Ok(ClientMemory { memory: self.shared.memory(), read_only: false }),
            _ => Err(IoReturn::BAD_ARGUMENT),
        }
    }
}

/// A scripted device with its release thread.
struct Rig {
    shared: Arc<Shared>,
}

impl Rig {
    fn new(script: &[(u64, Act)]) -> Rig {
        let shared = Arc::new(Shared::default());
        shared.lock().script = script.iter().copied().collect();
        let releaser = Arc::clone(&shared);
        thread::spawn(move || release_loop(releaser));
        Rig { shared }
    }

    fn connect(
        &self,
    ) -> impl FnMut() -> Result<FwLoader<InProcess<Client>>, Error> + Send + 'static {
        let shared = Arc::clone(&self.shared);
        move || {
            let generation = shared.lock().generation;
            FwLoader::connect(InProcess::new(Client { shared: Arc::clone(&shared), generation }))
        }
    }

    fn device(&self) -> MutexGuard<'_, Device> {
        self.shared.lock()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_all();
    }
}

/// An image file of `len` bytes of a recognisable pattern.
fn image_file(dir: &Path, len: usize) -> (Image, Vec<u8>) {
    let bytes: Vec<u8> =
        (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(7) as u8).collect();
    let path = dir.join("image.bin");
    std::fs::write(&path, &bytes).unwrap();
    (Image::open(&path, Some(Format::Bin), Some(0x0800_0000)).unwrap(), bytes)
}

/// Small slots, so that a small image takes many transfers.
fn small_slots() -> Config {
    Config { slot_size: 4096 + HEADER as u32, ..Config::default() }
}

// ----- tests -------------------------------------------------------------------

#[test]
fn every_byte_lands_with_headers_written_in_place_and_completions_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let (image, bytes) = image_file(dir.path(), 200_000);
    let rig = Rig::new(&[]);
    let mut phases = Vec::new();
    let mut reported = 0;
    let summary = Upload::new(image)
        .config(small_slots())
        .run(rig.connect(), |p| {
            if phases.last() != Some(&p.phase) {
                phases.push(p.phase);
            }
            if p.phase == Phase::Transfer {
                assert!(p.done >= reported && p.done <= p.total);
                reported = p.done;
            }
        })
        .unwrap();
    let device = rig.device();
    assert!(device.header_errors.is_empty(), "{:?}", device.header_errors);
    assert_eq!(device.image, bytes);
    assert_eq!(device.finishes, 1);
    assert_eq!(phases, [Phase::Checksum, Phase::Connect, Phase::Transfer, Phase::Verify]);
    assert_eq!(reported, bytes.len() as u64);
    // 200 000 bytes in 4096-byte payloads.
    assert_eq!(summary.transfers, 49);
    assert_eq!(summary.bytes_sent, 200_000);
    assert_eq!(summary.image.crc32, crc32fast::hash(&bytes));
    assert_eq!(summary.image.load_address, 0x0800_0000);
    assert_eq!(summary.retries.total(), 0);
    assert_eq!(summary.slots, SLOT_COUNT);
    // Sequence numbers count every transfer.
    let mut sequences = device.sequences.clone();
    sequences.sort_unstable();
    assert_eq!(sequences, (0..49).collect::<Vec<u64>>());
    let order = &device.completion_order;
    assert!(order.windows(2).any(|w| w[0] > w[1]), "completions all came in order: {order:?}");
}

#[test]
fn each_recovery_is_counted_apart_and_the_image_still_lands() {
    let dir = tempfile::tempdir().unwrap();
    let (image, bytes) = image_file(dir.path(), 100_000);
    let script = [
        (1, Act::Stall),
        (3, Act::Aborted),
        (5, Act::Timeout),
        (7, Act::Short(HEADER as u32 + 1000)),
        (9, Act::Short(10)),
        (12, Act::Stall),
    ];
    let rig = Rig::new(&script);
    let summary = Upload::new(image).config(small_slots()).run(rig.connect(), |_| {}).unwrap();
    let device = rig.device();
    assert!(device.header_errors.is_empty(), "{:?}", device.header_errors);
    assert_eq!(device.image, bytes);
    let retries = summary.retries;
    assert_eq!(
        (retries.stalls, retries.aborted, retries.timeouts, retries.short, retries.reconnects),
        (2, 1, 1, 2, 0)
    );
    // 25 stretches and one more transfer per fault. Which stretch a fault
    // hits depends on the order of completions, so only bound the bytes:
    // every extra transfer resends at most one payload.
    assert_eq!(summary.transfers, 25 + 6);
    assert!(summary.bytes_sent > 100_000 && summary.bytes_sent <= 100_000 + 6 * 4096);
}

#[test]
fn a_bound_passed_fails_with_the_kind_and_offset_and_nothing_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (image, _) = image_file(dir.path(), 50_000);
    // Transfer 0 is the stretch at offset 0; every resubmission of it times
    // out too (resubmissions come after the other seven slots' transfers).
    let script: Vec<(u64, Act)> = (0..40).map(|i| (i, Act::Timeout)).collect();
    let rig = Rig::new(&script);
    let config = Config { max_timeouts: 2, ..small_slots() };
    let error = Upload::new(image).config(config).run(rig.connect(), |_| {}).unwrap_err();
    match error {
        UploadError::RetriesExhausted { kind, attempts, last, .. } => {
            assert_eq!((kind, attempts, last), (RetryKind::Timeout, 3, IoReturn::TIMEOUT));
        }
        other => panic!("{other}"),
    }
    assert!(error_text(&rig).is_empty());
    assert_eq!(rig.device().finishes, 0);
}

fn error_text(rig: &Rig) -> Vec<String> {
    rig.device().header_errors.clone()
}

#[test]
fn a_lost_device_is_reconnected_and_the_upload_resumes_from_the_acknowledged_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (image, bytes) = image_file(dir.path(), 120_000);
    let rig = Rig::new(&[(10, Act::Lose)]);
    rig.device().resume_offset = u64::MAX;
    let summary = Upload::new(image).config(small_slots()).run(rig.connect(), |_| {}).unwrap();
    let device = rig.device();
    assert_eq!(device.image, bytes);
    assert_eq!(summary.retries.reconnects, 1);
    assert_eq!(device.generation, 1);
    // The second session did not start from zero: fewer than two full passes.
    assert!(summary.bytes_sent < 2 * 120_000, "{}", summary.bytes_sent);
    assert!(summary.bytes_sent > 120_000);
}

#[test]
fn a_device_that_stays_away_ends_in_disconnected_after_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (image, _) = image_file(dir.path(), 20_000);
    let rig = Rig::new(&[(0, Act::Lose)]);
    let config = Config {
        reconnect_attempts: 2,
        reconnect_delay: Duration::from_millis(1),
        ..small_slots()
    };
    let mut attempts = 0;
    let mut connect = rig.connect();
    let error = Upload::new(image)
        .config(config)
        .run(
            || {
                attempts += 1;
                if attempts == 1 { connect() } else { Err(Error::Disconnected) }
            },
            |_| {},
        )
        .unwrap_err();
    assert!(matches!(error, UploadError::Disconnected { attempts: 2, .. }), "{error}");
    assert_eq!(attempts, 3);
}

#[test]
fn a_hung_device_trips_the_watchdog_then_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (image, bytes) = image_file(dir.path(), 40_000);
    let rig = Rig::new(&[(2, Act::Hang)]);
    rig.device().resume_offset = u64::MAX;
    let config = Config { watchdog: Duration::from_millis(200), ..small_slots() };
    let summary = Upload::new(image).config(config).run(rig.connect(), |_| {}).unwrap();
    assert_eq!(rig.device().image, bytes);
    assert_eq!(summary.retries.reconnects, 1);
    assert_eq!(rig.device().aborts, 1);
}

#[test]
fn cancelling_aborts_in_flight_work_and_never_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let (image, _) = image_file(dir.path(), 100_000);
    let rig = Rig::new(&[(3, Act::Hang)]);
    let cancel = Cancel::new();
    let canceller = cancel.clone();
    let handle = Upload::new(image).config(small_slots()).with_cancel(cancel).spawn(
        rig.connect(),
        move |p| {
            if p.phase == Phase::Transfer && p.done >= 4096 {
                canceller.cancel();
            }
        },
    );
    let error = handle.wait().unwrap_err();
    assert!(matches!(error, UploadError::Cancelled), "{error}");
    let device = rig.device();
    assert_eq!(device.finishes, 0);
    assert_eq!(device.aborts, 1);
}

#[test]
fn a_spawned_upload_is_a_future() {
    let dir = tempfile::tempdir().unwrap();
    let (image, bytes) = image_file(dir.path(), 30_000);
    let rig = Rig::new(&[]);
    let handle = Upload::new(image).config(small_slots()).spawn(rig.connect(), |_| {});
    let summary = block_on(handle).unwrap();
    assert_eq!(summary.image.total_len, 30_000);
    assert_eq!(rig.device().image, bytes);
}

/// A minimal executor: polls on the calling thread, parks between wakes.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unparker(thread::Thread);
    impl std::task::Wake for Unparker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unparker(thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        thread::park();
    }
}

#[test]
fn a_refused_commit_is_an_error_naming_the_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let (image, _) = image_file(dir.path(), 10_000);
    let rig = Rig::new(&[]);
    // The device's copy of the CRC disagrees: it refuses to commit.
    let mut connect = rig.connect();
    let shared = Arc::clone(&rig.shared);
    let error = Upload::new(image)
        .config(small_slots())
        .run(
            move || {
                let device = connect()?;
                Ok(Corrupting { inner: device, shared: Arc::clone(&shared) })
            },
            |_| {},
        )
        .unwrap_err();
    assert!(
        matches!(&error, UploadError::Refused { reason } if reason.contains("Failed")),
        "{error}"
    );
}

/// A device whose image gets one byte flipped before `finish`.
struct Corrupting {
    inner: FwLoader<InProcess<Client>>,
    shared: Arc<Shared>,
}

impl StagingDevice for Corrupting {
    type Header = SlotHeader;
    type Submitted = SubmitCompletion;
    const SLOT_COUNT: u32 = SLOT_COUNT;
    const SLOT_SIZE: u32 = SLOT_SIZE;
    fn header(fields: &SlotFields) -> SlotHeader {
        <FwLoader<InProcess<Client>> as StagingDevice>::header(fields)
    }
    fn acknowledgement(done: &SubmitCompletion) -> Acknowledgement {
        <FwLoader<InProcess<Client>> as StagingDevice>::acknowledgement(done)
    }
    fn ring(&self) -> Result<Mapping<'_, ReadWrite>, Error> {
        self.inner.ring()
    }
    fn begin(&self, image: &ImageIdentity) -> Result<Begun, Error> {
        StagingDevice::begin(&self.inner, image)
    }
    fn submit(&self, slot: u32, len: u32) -> Result<Pending<SubmitCompletion>, Error> {
        StagingDevice::submit(&self.inner, slot, len)
    }
    fn finish(&self, image_crc32: u32) -> Result<Verdict, Error> {
        self.shared.lock().image[5] ^= 0x10;
        StagingDevice::finish(&self.inner, image_crc32)
    }
    fn abort(&self) -> Result<(), Error> {
        StagingDevice::abort(&self.inner)
    }
}

#[test]
fn configurations_that_do_not_fit_the_ring_are_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (image, _) = image_file(dir.path(), 10_000);
    let rig = Rig::new(&[]);
    let image = Arc::new(image);
    for (config, expected) in [
        (
            Config { slots: SLOT_COUNT + 1, ..Config::default() },
            "9 slots asked for; the dext's ring has 8",
        ),
        (Config { slot_size: SLOT_SIZE + 1, ..Config::default() }, "does not fit"),
        (Config { slot_size: HEADER as u32, ..Config::default() }, "more than the 24-byte header"),
    ] {
        let upload =
            Upload::new(Image::open(image.path(), Some(Format::Bin), Some(0x0800_0000)).unwrap());
        let error = upload.config(config).run(rig.connect(), |_| {}).unwrap_err();
        assert!(matches!(error, UploadError::Config(_)), "{error}");
        assert!(error.to_string().contains(expected), "{error}");
    }
    assert_eq!(rig.device().transfers, 0);
}

#[test]
fn a_failing_first_connection_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let (image, _) = image_file(dir.path(), 1000);
    let error = Upload::new(image)
        .run(
            || -> Result<FwLoader<InProcess<Client>>, Error> {
                Err(Error::NotFound { service: "x".into(), hint: String::new() })
            },
            |_| {},
        )
        .unwrap_err();
    assert!(matches!(error, UploadError::Connect(Error::NotFound { .. })), "{error}");
}

//! The USB test dext (tests/usbdext) against a Rust test device whose bulk
//! OUT endpoint is the simulator's `BulkOutPipe`: one function per check,
//! run for every build by `usb_dext_tests!`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use dextlink::IoReturn;
use dextlink::sim::usb::{BulkOutDevice, BulkOutPipe, FaultPlan, LinkModel, Receipt, short_len};
use dextlink_sim::driverkit::usb::{SetupPacket, SimpleDescriptors, UsbDevice, UsbInterface};
use dextlink_sim::driverkit::{self, Call, Dictionary, LogType, Service, UserClient};

// The build, the compiler check, the shared-runtime lock and the one load,
// as for the other test dext.
#[path = "../common/mod.rs"]
mod common;
pub use common::{compiler_available, load_once, serial};

/// A guard against a hang, never a measured time: a completion that does
/// not come within this fails the test.
const PATIENCE: Duration = Duration::from_secs(20);

/// Compiles the USB test dext with `compiler` and `extra` flags.
pub fn build_usb_dext(compiler: &str, extra: &[&str], name: &str) -> PathBuf {
    let sources = ["UsbTest.cpp", "UsbTestDriver.iig.cpp", "UsbTestClient.iig.cpp"];
    common::build_library(compiler, extra, name, "tests/usbdext", &sources)
}

/// The log lines of the dext since the sink was installed.
fn log_lines() -> &'static Mutex<Vec<String>> {
    static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    LINES.get_or_init(|| {
        driverkit::set_log_sink(Some(Arc::new(|_: LogType, line: &str| {
            log_lines().lock().unwrap_or_else(|e| e.into_inner()).push(line.to_owned());
        })));
        Mutex::new(Vec::new())
    })
}

fn take_log() -> Vec<String> {
    std::mem::take(&mut *log_lines().lock().unwrap_or_else(|e| e.into_inner()))
}

/// The far end of the bulk OUT pipe: keeps every byte it is given.
#[derive(Default)]
pub struct Recorder {
    bytes: Mutex<Vec<u8>>,
}

impl BulkOutDevice for Recorder {
    fn receive(&self, data: &[u8]) -> Receipt {
        self.bytes.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(data);
        Receipt::Accepted(data.len())
    }
}

/// The test device: vendor 0x1209, product 0x0001, one interface with the
/// bulk OUT endpoint 0x01; vendor request 1 (IN) answers "dextlink".
pub struct TestDevice {
    descriptors: SimpleDescriptors,
    pipe: BulkOutPipe,
    recorder: Arc<Recorder>,
    control_out: Mutex<Vec<SetupPacket>>,
}

impl TestDevice {
    pub fn new(faults: &str) -> Arc<TestDevice> {
        let recorder = Arc::new(Recorder::default());
        let plan = FaultPlan::parse(faults, 1).expect("fault spec");
        let pipe = BulkOutPipe::new(LinkModel::UNTHROTTLED, plan, recorder.clone());
        Arc::new(TestDevice {
            descriptors: SimpleDescriptors {
                id_vendor: 0x1209,
                id_product: 0x0001,
                bcd_device: 0x0100,
                configuration_value: 1,
                interface_number: 0,
                interface_class: 0xff,
                bulk_out_endpoints: vec![0x01],
            },
            pipe,
            recorder,
            control_out: Mutex::new(Vec::new()),
        })
    }

    pub fn received(&self) -> Vec<u8> {
        self.recorder.bytes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn control_out_requests(&self) -> Vec<SetupPacket> {
        self.control_out.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl UsbDevice for TestDevice {
    fn device_descriptor(&self) -> [u8; 18] {
        self.descriptors.device_descriptor()
    }

    fn configuration_descriptor(&self) -> Vec<u8> {
        self.descriptors.configuration_descriptor()
    }

    fn control_in(&self, setup: &SetupPacket, data: &mut [u8]) -> Result<usize, IoReturn> {
        if setup.request_type == 0xc0 && setup.request == 1 {
            let answer = b"dextlink";
            let len = answer.len().min(data.len());
            data[..len].copy_from_slice(&answer[..len]);
            return Ok(len);
        }
        Err(IoReturn::USB_HOST_PIPE_STALLED)
    }

    fn control_out(&self, setup: &SetupPacket, _data: &[u8]) -> Result<(), IoReturn> {
        self.control_out.lock().unwrap_or_else(|e| e.into_inner()).push(*setup);
        Ok(())
    }

    fn bulk_out_pipe(&self, address: u8) -> Option<BulkOutPipe> {
        (address == 0x01).then(|| self.pipe.clone())
    }
}

/// What the dext's WriteComplete sent the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub status: IoReturn,
    pub actual: u64,
    pub slot: u64,
    pub has_timestamp: bool,
}

/// A started UsbTestDriver on the test device's interface, and its user client.
pub struct Session {
    pub device: Arc<TestDevice>,
    pub interface: UsbInterface,
    pub service: Service,
    pub client: UserClient,
    completions: Receiver<Completion>,
    sender: std::sync::mpsc::Sender<Completion>,
}

pub fn personality() -> Dictionary {
    let personality =
        Dictionary::personality("UsbTestDriver", Some("UsbTestClient")).expect("personality");
    personality.set_string("IOProviderClass", "IOUSBHostInterface").expect("IOProviderClass");
    personality
}

impl Session {
    pub fn open(faults: &str) -> Session {
        log_lines();
        let device = TestDevice::new(faults);
        let interface = UsbInterface::new(device.clone(), 0).expect("the test device's interface");
        assert_eq!(interface.class_name(), "IOUSBHostInterface");
        let service = Service::start_on(&personality(), &interface).expect("start UsbTestDriver");
        assert!(service.is_registered());
        let client = service.new_user_client(0).expect("NewUserClient");
        let (sender, completions) = channel();
        Session { device, interface, service, client, completions, sender }
    }

    pub fn call(&self, selector: u64, scalars: &[u64], outputs: u32) -> Result<Vec<u64>, IoReturn> {
        let call = Call {
            selector,
            scalar_input: scalars,
            scalar_output_count: outputs,
            ..Call::default()
        };
        self.client.call(&call).map(|reply| reply.scalar_output)
    }

    /// Selector 0: AsyncIO of `len` bytes of slot `slot`, filled from `fill` up.
    pub fn submit(&self, slot: u64, len: u64, fill: u8, timeout_ms: u64) -> Result<(), IoReturn> {
        let sender = Mutex::new(self.sender.clone());
        let scalars = [slot, len, u64::from(fill), timeout_ms];
        let call = Call { selector: 0, scalar_input: &scalars, ..Call::default() };
        self.client
            .call_async(&call, move |status, values| {
                assert_eq!(status, IoReturn::SUCCESS);
                let completion = Completion {
                    status: IoReturn(values[0] as u32 as i32),
                    actual: values[1],
                    slot: values[2],
                    has_timestamp: values[3] != 0,
                };
                let _ = sender.lock().unwrap_or_else(|e| e.into_inner()).send(completion);
            })
            .map(|_| ())
    }

    pub fn next_completion(&self) -> Completion {
        self.completions
            .recv_timeout(PATIENCE)
            .expect("a CompleteAsyncIO within the patience limit")
    }

    pub fn finish(self) {
        self.client.stop().expect("stop the user client");
        if self.service.stop().is_err() {
            // Already stopped by a disconnect.
        }
        drop(self);
        assert_no_leaks();
    }
}

pub fn assert_no_leaks() {
    let mut report = driverkit::leak_report();
    for _ in 0..200 {
        if report.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
        report = driverkit::leak_report();
    }
    panic!("leaked:\n{report}");
}

/// The bytes the dext puts in a slot: fill, fill+1, … (wrapping).
fn pattern(fill: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| fill.wrapping_add(i as u8)).collect()
}

// ---- the checks

pub fn bytes_arrive_in_order_and_complete_on_the_dexts_queue() {
    let session = Session::open("");
    let mut expected = Vec::new();
    for slot in 0..4u64 {
        let fill = (slot * 16) as u8;
        session.submit(slot, 1000 + slot, fill, 0).expect("AsyncIO");
        expected.extend(pattern(fill, 1000 + slot as usize));
    }
    for slot in 0..4u64 {
        let completion = session.next_completion();
        assert_eq!(
            completion,
            Completion {
                status: IoReturn::SUCCESS,
                actual: 1000 + slot,
                slot,
                has_timestamp: true
            }
        );
    }
    assert_eq!(session.device.received(), expected);
    session.finish();
}

pub fn a_stall_completes_stalled_and_clear_stall_aborts_the_rest() {
    let session = Session::open("stall@1");
    for slot in 0..3u64 {
        session.submit(slot, 512, 1, 0).expect("AsyncIO");
    }
    let first = session.next_completion();
    assert_eq!((first.slot, first.status, first.actual), (0, IoReturn::SUCCESS, 512));
    let stalled = session.next_completion();
    assert_eq!((stalled.slot, stalled.status), (1, IoReturn::USB_HOST_PIPE_STALLED));
    assert!(session.device.pipe.is_halted());
    assert_eq!(session.call(1, &[], 1), Ok(vec![0]), "ClearStall");
    let aborted = session.next_completion();
    assert_eq!((aborted.slot, aborted.status, aborted.actual), (2, IoReturn::ABORTED, 0));
    assert!(!session.device.pipe.is_halted());
    // ClearStall(true) sent CLEAR_FEATURE(ENDPOINT_HALT) to endpoint 0x01.
    let requests = session.device.control_out_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!((requests[0].request_type, requests[0].request, requests[0].index), (0x02, 1, 0x01));
    session.submit(0, 64, 9, 0).expect("AsyncIO after ClearStall");
    assert_eq!(session.next_completion().status, IoReturn::SUCCESS);
    session.finish();
}

pub fn a_timeout_completes_timed_out_and_does_not_halt() {
    let session = Session::open("timeout@0");
    session.submit(0, 256, 0, 20).expect("AsyncIO");
    let timed_out = session.next_completion();
    assert_eq!((timed_out.status, timed_out.actual), (IoReturn::TIMEOUT, 0));
    session.submit(1, 256, 0, 20).expect("AsyncIO after a timeout");
    assert_eq!(session.next_completion().status, IoReturn::SUCCESS);
    assert_eq!(session.device.received().len(), 256);
    session.finish();
}

pub fn a_short_transfer_completes_with_fewer_bytes() {
    let session = Session::open("short@0");
    session.submit(0, 2048, 5, 0).expect("AsyncIO");
    let short = session.next_completion();
    assert_eq!(short.status, IoReturn::SUCCESS);
    assert_eq!(short.actual, short_len(2048) as u64);
    assert!(short.actual < 2048);
    assert_eq!(session.device.received(), pattern(5, short_len(2048)));
    session.finish();
}

pub fn abort_ends_a_transfer_the_device_never_takes() {
    // A timeout fault with no timeout: the transfer waits until aborted.
    let session = Session::open("timeout@0");
    session.submit(0, 128, 0, 0).expect("AsyncIO");
    assert_eq!(session.call(5, &[], 1), Ok(vec![0]), "Abort(kIOUSBAbortSynchronous)");
    let aborted = session.next_completion();
    assert_eq!((aborted.status, aborted.actual), (IoReturn::ABORTED, 0));
    session.finish();
}

pub fn a_second_session_is_refused_with_exclusive_access() {
    let session = Session::open("");
    let second = Service::start_on(&personality(), &session.interface);
    assert_eq!(second.err(), Some(IoReturn::EXCLUSIVE_ACCESS));
    let log = take_log();
    assert!(log.iter().any(|line| line.contains("Open failed: 0xe00002c5")), "{log:?}");
    // The same driver opening again is refused too.
    assert_eq!(session.call(3, &[5], 1), Ok(vec![IoReturn::EXCLUSIVE_ACCESS.0 as u32 as u64]));
    session.finish();
    // Once the session is closed, a new one may open.
    let again = Session::open("");
    again.finish();
}

pub fn disconnect_runs_stop_and_later_transfers_fail() {
    let session = Session::open("timeout@0");
    // Pending when the device goes: it completes with kIOReturnNoDevice.
    session.submit(0, 128, 0, 0).expect("AsyncIO");
    take_log();
    session.interface.disconnect(&session.service).expect("disconnect");
    let log = take_log();
    assert!(log.iter().any(|line| line == "UsbTestDriver: Stop"), "Stop must run: {log:?}");
    let pending = session.next_completion();
    assert_eq!(pending.status, IoReturn::NO_DEVICE);
    assert_eq!(session.submit(1, 64, 0, 0), Err(IoReturn::NO_DEVICE));
    assert_eq!(session.call(4, &[0, 64, 0], 2), Ok(vec![IoReturn::NO_DEVICE.0 as u32 as u64, 0]));
    assert_eq!(session.call(2, &[0xc0, 1, 0, 0, 8], 2), Err(IoReturn::NO_DEVICE));
    session.finish();
}

pub fn a_disconnect_fault_terminates_the_device_and_stop_runs() {
    let session = Session::open("disconnect@1");
    take_log();
    session.submit(0, 64, 0, 0).expect("AsyncIO");
    assert_eq!(session.next_completion().status, IoReturn::SUCCESS);
    session.submit(1, 64, 0, 0).expect("AsyncIO");
    assert_eq!(session.next_completion().status, IoReturn::NO_DEVICE);
    // Stop runs on a thread of the runtime's: wait for its last line.
    let mut log = Vec::new();
    for _ in 0..2000 {
        log.extend(take_log());
        if log.iter().any(|line| line == "UsbTestDriver: Stop") {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(log.iter().any(|line| line == "UsbTestDriver: Stop"), "Stop must run: {log:?}");
    // The device is gone for the dext even after the pipe's model reconnects.
    session.device.pipe.reconnect();
    assert_eq!(session.submit(2, 64, 0, 0), Err(IoReturn::NO_DEVICE));
    session.finish();
}

pub fn a_bit_flip_changes_one_bit_of_what_arrives() {
    let session = Session::open("bitflip@0");
    session.submit(0, 1024, 3, 0).expect("AsyncIO");
    let completion = session.next_completion();
    assert_eq!((completion.status, completion.actual), (IoReturn::SUCCESS, 1024));
    let received = session.device.received();
    let flipped: u32 =
        received.iter().zip(pattern(3, 1024)).map(|(a, b)| (a ^ b).count_ones()).sum();
    assert_eq!((received.len(), flipped), (1024, 1));
    session.finish();
}

pub fn bad_arguments_are_refused() {
    let session = Session::open("");
    let expected = [
        (0, IoReturn::BAD_ARGUMENT, "a length over the buffer's"),
        (1, IoReturn::BAD_ARGUMENT, "no completion"),
        (2, IoReturn::BAD_ARGUMENT, "an action not of type CompleteAsyncIO"),
        (3, IoReturn::BAD_ARGUMENT, "a length of 0"),
        (4, IoReturn::NOT_FOUND, "an endpoint the interface lacks"),
        (5, IoReturn::EXCLUSIVE_ACCESS, "a second Open"),
        (6, IoReturn::BAD_ARGUMENT, "no buffer"),
        (7, IoReturn::BAD_ARGUMENT, "a control request longer than its buffer"),
    ];
    for (which, error, what) in expected {
        assert_eq!(session.call(3, &[which], 1), Ok(vec![error.0 as u32 as u64]), "{what}");
    }
    // None of them reached the device.
    assert!(session.device.received().is_empty());
    session.finish();
}

pub fn device_requests_reach_the_control_endpoint() {
    let session = Session::open("");
    let reply = session.call(2, &[0xc0, 1, 0, 0, 8], 2).expect("vendor request");
    assert_eq!(reply, vec![8, u64::from_le_bytes(*b"dextlink")]);
    // A request the device does not know: it STALLs.
    assert_eq!(session.call(2, &[0xc0, 2, 0, 0, 8], 2), Err(IoReturn::USB_HOST_PIPE_STALLED));
    // GET_DESCRIPTOR(device), answered from the device's descriptor.
    let reply = session.call(2, &[0x80, 6, 0x0100, 0, 18], 2).expect("GET_DESCRIPTOR");
    assert_eq!(reply[0], 18);
    assert_eq!(reply[1].to_le_bytes()[..2], [18, 1]);
    session.finish();
}

pub fn synchronous_io_waits_for_its_transfer() {
    let session = Session::open("");
    assert_eq!(session.call(4, &[0, 100, 7], 2), Ok(vec![0, 100]));
    assert_eq!(session.device.received(), vec![7; 100]);
    session.finish();
}

pub fn malformed_descriptors_are_refused() {
    struct Broken(Vec<u8>);
    impl UsbDevice for Broken {
        fn device_descriptor(&self) -> [u8; 18] {
            TestDevice::new("").device_descriptor()
        }
        fn configuration_descriptor(&self) -> Vec<u8> {
            self.0.clone()
        }
        fn bulk_out_pipe(&self, _: u8) -> Option<BulkOutPipe> {
            None
        }
    }
    let good = TestDevice::new("").configuration_descriptor();
    let mut wrong_total = good.clone();
    wrong_total[2] += 1;
    let mut endpoint_overruns = good.clone();
    let last = endpoint_overruns.len() - 7;
    endpoint_overruns[last] = 9;
    for (bytes, what) in [
        (wrong_total, "wTotalLength"),
        (endpoint_overruns, "an endpoint past the end"),
        (vec![9, 2], "too short"),
    ] {
        assert_eq!(
            UsbInterface::new(Arc::new(Broken(bytes)), 0).err(),
            Some(IoReturn::BAD_ARGUMENT),
            "{what}"
        );
    }
    assert_eq!(
        UsbInterface::new(TestDevice::new(""), 3).err(),
        Some(IoReturn::BAD_ARGUMENT),
        "no interface 3"
    );
    assert_no_leaks();
}

/// The whole scenario in one run, for the sanitizer child process.
pub fn everything() {
    bytes_arrive_in_order_and_complete_on_the_dexts_queue();
    a_stall_completes_stalled_and_clear_stall_aborts_the_rest();
    a_timeout_completes_timed_out_and_does_not_halt();
    a_short_transfer_completes_with_fewer_bytes();
    abort_ends_a_transfer_the_device_never_takes();
    a_second_session_is_refused_with_exclusive_access();
    disconnect_runs_stop_and_later_transfers_fail();
    a_disconnect_fault_terminates_the_device_and_stop_runs();
    a_bit_flip_changes_one_bit_of_what_arrives();
    bad_arguments_are_refused();
    device_requests_reach_the_control_endpoint();
    synchronous_io_waits_for_its_transfer();
    malformed_descriptors_are_refused();
}

/// One #[test] per check for a build of the USB test dext.
#[macro_export]
macro_rules! usb_dext_tests {
    ($build:expr) => {
        fn library() -> Option<&'static dextlink_sim::driverkit::Library> {
            let build: fn() -> Option<std::path::PathBuf> = $build;
            static BUILT: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
            let path = BUILT.get_or_init(build).clone()?;
            Some(usb_common::load_once(move || path))
        }
        $crate::usb_dext_tests!(@each
            bytes_arrive_in_order_and_complete_on_the_dexts_queue
            a_stall_completes_stalled_and_clear_stall_aborts_the_rest
            a_timeout_completes_timed_out_and_does_not_halt
            a_short_transfer_completes_with_fewer_bytes
            abort_ends_a_transfer_the_device_never_takes
            a_second_session_is_refused_with_exclusive_access
            disconnect_runs_stop_and_later_transfers_fail
            a_disconnect_fault_terminates_the_device_and_stop_runs
            a_bit_flip_changes_one_bit_of_what_arrives
            bad_arguments_are_refused
            device_requests_reach_the_control_endpoint
            synchronous_io_waits_for_its_transfer
            malformed_descriptors_are_refused);
    };
    (@each $($name:ident)*) => {
        $(
            #[test]
            fn $name() {
                if library().is_some() {
                    let _serial = usb_common::serial();
                    usb_common::$name();
                }
            }
        )*
    };
}

//! The C++ fwloader dext in this process (`sim::cpp_simulator`), through the
//! typed client: the one-session rule, the staging ring answered after the
//! driver's `Stop`, and a call script run against the C++ dext and the Rust
//! model with every reply compared.

#![cfg(target_os = "linux")]

use std::time::Duration;

use dextlink::sim::{Driver, UserClient};
use dextlink::staging::slot_crc32;
use fwloader::fw_loader::{SLOT_HEADER_SIZE, SLOT_SIZE};
use fwloader::sim::{self, SimOptions};
use fwloader::{FwLoader, ImageFormat, ImageInfo, SlotHeader};
use zerocopy::{FromZeros, IntoBytes};

/// A guard against a hang, never a measured time.
const PATIENCE: Duration = Duration::from_secs(20);

fn options() -> SimOptions {
    SimOptions { link: dextlink::sim::usb::LinkModel::UNTHROTTLED, ..SimOptions::default() }
}

fn info(image: &[u8]) -> ImageInfo {
    let mut info = ImageInfo::new_zeroed();
    info.total_len = image.len() as u64;
    info.load_address = 0x0800_0000;
    info.set_format(ImageFormat::Raw);
    info.image_crc32 = crc32fast::hash(image);
    info
}

fn image(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

/// Puts `payload` (at `offset` of the image) with its header into `slot`;
/// returns the length to submit.
fn fill_slot<T: dextlink::Transport>(
    client: &FwLoader<T>,
    slot: u32,
    sequence: u64,
    offset: u64,
    payload: &[u8],
) -> u32 {
    let mut ring = client.staging().expect("map the staging ring");
    let base = slot as usize * SLOT_SIZE as usize;
    let length = payload.len() as u32;
    let header = SlotHeader {
        sequence,
        image_offset: offset,
        length,
        crc32: slot_crc32(sequence, offset, length, crc32fast::hash(payload)),
    };
    let header_len = SLOT_HEADER_SIZE as usize;
    ring.as_mut_slice()[base..base + header_len].copy_from_slice(header.as_bytes());
    ring.as_mut_slice()[base + header_len..base + header_len + payload.len()]
        .copy_from_slice(payload);
    SLOT_HEADER_SIZE + length
}

#[test]
fn a_second_client_cannot_upload_while_one_upload_runs() {
    let simulator = sim::cpp_simulator(&options()).unwrap_or_else(|e| panic!("{e}"));
    let first = FwLoader::connect(simulator.open().expect("open")).expect("connect");
    let second = FwLoader::connect(simulator.open().expect("open")).expect("connect");
    let bytes = image(8192);
    first.begin(&info(&bytes)).expect("the first client's begin");

    let refused = second.begin(&info(&bytes)).expect_err("a second upload while one runs");
    assert!(
        refused.to_string().contains("kIOReturnExclusiveAccess"),
        "expected kIOReturnExclusiveAccess, got {refused}"
    );
    let refused = second.submit(0, SLOT_HEADER_SIZE + 16).expect_err("a submit of the second");
    assert!(refused.to_string().contains("kIOReturnExclusiveAccess"), "{refused}");
    // Reading the state is no upload.
    let state = second.status().expect("the second client reads the state");
    assert_eq!(state.total_len, 8192);

    // Once the first upload ends (abort), the second may start one.
    first.abort().expect("abort");
    second.begin(&info(&bytes)).expect("begin after the first upload ended");
    // And the first, closed, leaves it to the second.
    drop(first);
    let len = fill_slot(&second, 0, 0, 0, &bytes);
    let done = second.submit(0, len).expect("submit").wait().expect("completion");
    assert_eq!(done.transferred, len);
    assert_eq!(
        second.finish(crc32fast::hash(&bytes)).expect("finish"),
        fwloader::Status::Committed
    );
}

#[test]
fn the_staging_ring_is_answered_after_the_driver_stopped() {
    let simulator = sim::cpp_simulator(&options()).unwrap_or_else(|e| panic!("{e}"));
    let mut client = simulator.driver().new_user_client(0).expect("NewUserClient");
    let before = client.copy_client_memory(0).expect("memory type 0 while the driver runs");
    assert!(!before.read_only, "the ring is mapped read-write");
    // What exit does to a dext: the driver's Stop runs now, while the user
    // client lives. The kernel then asks for the memory again to unmap it.
    simulator.driver().shut_down();
    let after = client.copy_client_memory(0).expect("memory type 0 after the driver's Stop");
    assert!(std::sync::Arc::ptr_eq(&before.memory, &after.memory), "the same ring");
    assert_eq!(after.memory.len(), (fwloader::fw_loader::SLOT_COUNT * SLOT_SIZE) as usize);
    let unknown = client.copy_client_memory(1).expect_err("an undeclared memory type");
    assert_eq!(unknown, dextlink::IoReturn::BAD_ARGUMENT);
    client.stop();
}

/// A submit's reply as text. How far the device has programmed when a
/// transfer completes depends on its flash thread, not on the dext, so the
/// acknowledged offset is only checked to lie within the image.
fn submitted(
    reply: Result<Result<fwloader::SubmitCompletion, dextlink::Error>, dextlink::Error>,
    total: usize,
) -> String {
    match reply {
        Ok(Ok(done)) => format!(
            "Ok(transferred {}, acknowledged within the image: {})",
            done.transferred,
            done.acknowledged <= total as u64
        ),
        other => format!("{other:?}"),
    }
}

/// Runs the same calls against a client and returns every reply as text.
fn call_script<T: dextlink::Transport>(client: &FwLoader<T>) -> Vec<String> {
    let bytes = image(3 * 4096 + 100);
    let mut replies = Vec::new();
    let mut record = |what: &str, reply: String| replies.push(format!("{what}: {reply}"));
    record("status", format!("{:?}", client.status()));
    record("finish before begin", format!("{:?}", client.finish(0)));
    let mut empty = info(&bytes);
    empty.total_len = 0;
    record("begin of nothing", format!("{:?}", client.begin(&empty)));
    let mut huge = info(&bytes);
    huge.total_len = u64::MAX;
    record("begin of too much", format!("{:?}", client.begin(&huge)));
    record("begin", format!("{:?}", client.begin(&info(&bytes))));
    record("write of nothing", format!("{:?}", client.write(0, &[])));
    // Like a submit's, write's acknowledged offset depends on the flash thread.
    let written = client.write(0, &bytes[..4096]).map(|acknowledged| acknowledged <= 4096);
    record("write (acknowledged within the block)", format!("{written:?}"));
    record("finish too early", format!("{:?}", client.finish(crc32fast::hash(&bytes))));
    let mut pending = Vec::new();
    for (slot, at) in [(0u32, 4096usize), (1, 8192)] {
        let end = (at + 4096).min(bytes.len());
        let len = fill_slot(client, slot, slot as u64 + 1, at as u64, &bytes[at..end]);
        pending.push(client.submit(slot, len));
    }
    for (slot, submission) in pending.into_iter().enumerate() {
        let reply = submission.map(|mut p| p.wait_timeout(PATIENCE));
        record(&format!("submit {slot}"), self::submitted(reply, bytes.len()));
    }
    let len = fill_slot(client, 2, 3, 12288, &bytes[12288..]);
    // A slot whose header is a lie: the device stalls it.
    {
        let mut ring = client.staging().expect("map");
        ring.as_mut_slice()[2 * SLOT_SIZE as usize + SLOT_HEADER_SIZE as usize] ^= 1;
    }
    let reply = client.submit(2, len).map(|mut p| p.wait_timeout(PATIENCE));
    record("submit of a flipped bit", submitted(reply, bytes.len()));
    let len = fill_slot(client, 2, 4, 12288, &bytes[12288..]);
    let reply = client.submit(2, len).map(|mut p| p.wait_timeout(PATIENCE));
    record("submit again", submitted(reply, bytes.len()));
    record("finish", format!("{:?}", client.finish(crc32fast::hash(&bytes))));
    record("status", format!("{:?}", client.status()));
    record("begin again", format!("{:?}", client.begin(&info(&bytes))));
    record("abort", format!("{:?}", client.abort()));
    record("status", format!("{:?}", client.status()));
    replies
}

#[test]
fn the_cpp_dext_and_the_rust_model_answer_one_call_script_alike() {
    let cpp = sim::cpp_simulator(&options()).unwrap_or_else(|e| panic!("{e}"));
    let rust = sim::simulator(&options()).unwrap_or_else(|e| panic!("{e}"));
    let cpp_replies = call_script(&FwLoader::connect(cpp.open().expect("open")).expect("connect"));
    let rust_replies =
        call_script(&FwLoader::connect(rust.open().expect("open")).expect("connect"));
    assert_eq!(cpp_replies.len(), rust_replies.len());
    let differences: Vec<String> = cpp_replies
        .iter()
        .zip(&rust_replies)
        .filter(|(c, r)| c != r)
        .map(|(c, r)| format!("  cpp:  {c}\n  rust: {r}"))
        .collect();
    assert!(differences.is_empty(), "the dexts answer differently:\n{}", differences.join("\n"));
    // The script reached a commit, so it compared more than errors.
    assert!(cpp_replies.iter().any(|r| r.starts_with("finish: Ok(Committed)")), "{cpp_replies:#?}");
}

#[test]
fn a_personality_for_another_product_is_not_started_and_the_error_says_why() {
    let (library, plist) = sim::cpp_dext_paths().unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(&plist).expect("read Info.plist");
    let other = text.replace(
        "<key>idProduct</key>\n\t\t\t<integer>2</integer>",
        "<key>idProduct</key>\n\t\t\t<integer>3</integer>",
    );
    assert_ne!(text, other, "the plist names idProduct 2");
    let dir = tempfile::tempdir().unwrap();
    let other_plist = dir.path().join("Info.plist");
    std::fs::write(&other_plist, other).unwrap();

    let options = options();
    let flash = dextlink::sim::flash::Flash::in_memory(options.geometry, options.timing).unwrap();
    let bootloader = fwloader::device::Bootloader::new(flash, options.bootloader);
    let pipe = dextlink::sim::usb::BulkOutPipe::new(
        options.link,
        options.faults.clone(),
        std::sync::Arc::new(bootloader.clone()),
    );
    let device = std::sync::Arc::new(fwloader::device::BootloaderUsb::new(bootloader, pipe));
    let interface = dextlink_sim::driverkit::usb::UsbInterface::new(device.clone(), 0).unwrap();
    let error =
        dextlink_sim::CppDext::load_on_usb(&library, &other_plist, &interface, &device.identity())
            .expect_err("a personality for product 3 on product 2");
    assert_eq!(
        error.to_string(),
        format!(
            "{}: no personality matches the USB interface (FwLoaderDriver: idProduct is 0x0003 \
             in the personality but 0x0002 on the interface)",
            other_plist.display()
        )
    );
    // The real plist matches the same interface.
    let dext = dextlink_sim::CppDext::load_on_usb(&library, &plist, &interface, &device.identity())
        .expect("the shipped personality matches");
    assert_eq!(dext.registered(), ["FwLoaderDriver"]);
    dext.shut_down();
}

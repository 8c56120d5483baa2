//! The simulated USB bootloader at the far end of the fwloader dext's bulk
//! OUT pipe: it receives slots, checks them, and programs a two-bank flash.
//!
//! - **Transfers.** Each transfer is a slot: a [`SlotHeader`] and its
//!   payload. A whole transfer whose payload does not match the header's
//!   CRC-32 (a bit flipped in transit), or that points outside the image, is
//!   answered with a STALL: the host clears it and sends the slot again. A
//!   transfer cut short (the link's `short` fault) keeps the bytes that
//!   arrived (USB's own packet CRCs vouch for them; the whole-image CRC at
//!   `finish` checks everything again) and the host sends the rest.
//! - **Flash.** Writes go to the inactive bank only, a sector at a time:
//!   received bytes collect in RAM per sector; a complete sector is compared
//!   with what the flash already holds and skipped if identical (so a
//!   resumed upload costs no flash time for sectors written before the
//!   interruption), otherwise erased and programmed, on a worker thread so
//!   that programming overlaps the next transfers. The device holds at most
//!   [`BootloaderConfig::ram`] bytes of unprogrammed data; beyond that it NAKs
//!   (`receive` blocks), which is how a slow flash slows the link.
//! - **Acknowledged offset.** The prefix of the image whose sectors are all
//!   programmed. It is kept in the flash's record area after every sector, so
//!   that it survives a killed dext or client, and `begin` with the same
//!   image (length, load address, CRC) resumes from it.
//! - **Commit.** `finish` waits for the programming to drain, computes the
//!   CRC-32 of the inactive bank over the image, and only if it matches
//!   switches banks (atomically: [`Flash::commit`]). Anything else leaves
//!   the previous image active.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;

use dextlink::IoReturn;
use dextlink::sim::flash::{BankRecord, Flash, FlashError};
use dextlink::sim::usb::{BulkOutDevice, Receipt};
use dextlink::staging::slot_crc32;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use crate::fw_loader::{ImageFormat, ImageInfo, SlotHeader, Status, UploadState};

const HEADER: usize = std::mem::size_of::<SlotHeader>();

/// Marks the bootloader's session record in the flash's record area.
const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"FWLS");

/// The bootloader's persistent session record (in the flash metadata page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct SessionRecord {
    magic: u32,
    status: u32,
    session: u64,
    total_len: u64,
    load_address: u64,
    image_crc32: u32,
    format: u32,
    acknowledged: u64,
}

impl SessionRecord {
    fn identity(&self) -> (u64, u64, u32) {
        (self.total_len, self.load_address, self.image_crc32)
    }

    fn status(&self) -> Status {
        Status::try_from(self.status).unwrap_or(Status::Idle)
    }
}

/// How the bootloader behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootloaderConfig {
    /// Bytes of received, unprogrammed data the device buffers before it NAKs.
    pub ram: usize,
    /// Whether received data is programmed into the flash. Without it the
    /// device keeps nothing: it checks each slot's CRC as usual, composes the
    /// whole-image CRC from the slots' CRCs, and answers `finish` by that,
    /// leaving its banks alone. A device infinitely fast at storing, for
    /// measuring the host and the link (the benchmark).
    pub flash: bool,
}

impl Default for BootloaderConfig {
    fn default() -> BootloaderConfig {
        // Two full slots: one being programmed while the next arrives.
        BootloaderConfig { ram: 2 << 20, flash: true }
    }
}

/// Counters for tests and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BootloaderStats {
    pub transfers: u64,
    /// Transfers refused with a STALL (bad CRC, bad header, no session).
    pub refused: u64,
    /// Transfers that arrived cut short.
    pub partial: u64,
    pub sectors_programmed: u64,
    /// Complete sectors that already held the right bytes.
    pub sectors_skipped: u64,
}

/// A sector being assembled in RAM.
#[derive(Debug)]
struct SectorBuffer {
    bytes: Vec<u8>,
    /// Which byte ranges have arrived (start → end), merged.
    filled: BTreeMap<usize, usize>,
}

impl SectorBuffer {
    fn new(len: usize) -> SectorBuffer {
        SectorBuffer { bytes: vec![0xFF; len], filled: BTreeMap::new() }
    }

    fn put(&mut self, at: usize, data: &[u8]) {
        self.bytes[at..at + data.len()].copy_from_slice(data);
        let (mut start, mut end) = (at, at + data.len());
        // Merge with every range it touches.
        let touching: Vec<(usize, usize)> = self
            .filled
            .range(..=end)
            .filter(|(s, e)| **e >= start && **s <= end)
            .map(|(s, e)| (*s, *e))
            .collect();
        for (s, e) in touching {
            self.filled.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        self.filled.insert(start, end);
    }

    fn is_complete(&self) -> bool {
        self.filled.get(&0) == Some(&self.bytes.len())
    }
}

#[derive(Debug)]
struct State {
    record: SessionRecord,
    /// Sectors being assembled.
    assembling: BTreeMap<u64, SectorBuffer>,
    /// Complete sectors waiting for the flash worker.
    queued: BTreeMap<u64, Vec<u8>>,
    /// The sectors the worker is programming now.
    programming: Option<Range<u64>>,
    /// Sectors programmed (or found identical) this session, past the prefix.
    programmed: BTreeSet<u64>,
    /// Bytes held in RAM (assembling and queued).
    ram_used: usize,
    stats: BootloaderStats,
    /// An error the worker met (the flash refused); the session fails.
    flash_error: Option<String>,
    /// Without the flash: received stretches past the prefix (offset →
    /// length, CRC), and the CRC of the prefix.
    pieces: BTreeMap<u64, (u64, u32)>,
    prefix_crc: crc32fast::Hasher,
    shutdown: bool,
}

#[derive(Debug)]
struct Shared {
    flash: Flash,
    config: BootloaderConfig,
    state: Mutex<State>,
    /// Work queued, RAM freed, or the worker went idle.
    changed: Condvar,
}

/// The bootloader. Cheap to clone; clones are the same device.
#[derive(Debug, Clone)]
pub struct Bootloader {
    shared: Arc<Shared>,
}

impl Bootloader {
    /// A bootloader over `flash`, picking up the session record it holds.
    pub fn new(flash: Flash, config: BootloaderConfig) -> Bootloader {
        let mut record: SessionRecord = flash.read_record();
        if record.magic != RECORD_MAGIC {
            record = SessionRecord::new_zeroed();
            record.magic = RECORD_MAGIC;
        }
        // A session that was receiving when the device lost power (a killed
        // dext, say) is interrupted: resumable, not in progress.
        if record.status() == Status::Receiving {
            record.status = Status::Interrupted.into();
        }
        flash.write_record(&record);
        let shared = Arc::new(Shared {
            flash,
            config,
            state: Mutex::new(State {
                record,
                assembling: BTreeMap::new(),
                queued: BTreeMap::new(),
                programming: None,
                programmed: BTreeSet::new(),
                ram_used: 0,
                stats: BootloaderStats::default(),
                flash_error: None,
                pieces: BTreeMap::new(),
                prefix_crc: crc32fast::Hasher::new(),
                shutdown: false,
            }),
            changed: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        thread::Builder::new()
            .name("bootloader flash".to_string())
            .spawn(move || program_loop(&worker))
            .expect("spawning the bootloader's flash thread");
        Bootloader { shared }
    }

    pub fn flash(&self) -> &Flash {
        &self.shared.flash
    }

    pub fn stats(&self) -> BootloaderStats {
        self.shared.lock().stats
    }

    /// BEGIN: starts an upload of the image `info` describes, or resumes the
    /// interrupted one if it is the same image. Returns (session, resume offset).
    pub fn begin(&self, info: &ImageInfo) -> Result<(u64, u64), IoReturn> {
        let geometry = self.shared.flash.geometry();
        if info.total_len == 0 {
            return Err(IoReturn::BAD_ARGUMENT);
        }
        if info.total_len > geometry.bank_size {
            return Err(IoReturn::NO_SPACE);
        }
        let format = info.format().map_err(|_| IoReturn::BAD_ARGUMENT)?;
        let mut state = self.shared.lock();
        // What is buffered gets programmed before the device says where an
        // upload stands, so that a resume starts after everything it holds.
        while state.programming.is_some() || !state.queued.is_empty() {
            state = self.shared.wait(state);
        }
        let record = state.record;
        let same = record.identity() == (info.total_len, info.load_address, info.image_crc32);
        let resumable = matches!(record.status(), Status::Receiving | Status::Interrupted);
        if same && resumable {
            state.record.status = Status::Receiving.into();
        } else {
            // A new image: forget the old session. The inactive bank's
            // record goes first, so that a half-written bank is never valid.
            let inactive = self.shared.flash.inactive_bank();
            self.shared.flash.invalidate(inactive).map_err(|_| IoReturn::IO_ERROR)?;
            state.assembling.clear();
            state.queued.clear();
            state.programmed.clear();
            state.ram_used = 0;
            state.flash_error = None;
            state.pieces.clear();
            state.prefix_crc = crc32fast::Hasher::new();
            state.record = SessionRecord {
                magic: RECORD_MAGIC,
                status: Status::Receiving.into(),
                session: record.session.wrapping_add(1),
                total_len: info.total_len,
                load_address: info.load_address,
                image_crc32: info.image_crc32,
                format: format.into(),
                acknowledged: 0,
            };
        }
        self.shared.flash.write_record(&state.record);
        self.shared.changed.notify_all();
        Ok((state.record.session, state.record.acknowledged))
    }

    /// FINISH: waits for programming to drain, verifies the inactive bank
    /// against `image_crc32`, and commits by switching banks if it matches.
    pub fn finish(&self, image_crc32: u32) -> Result<Status, IoReturn> {
        let mut state = self.shared.lock();
        if state.record.status() != Status::Receiving {
            return Err(IoReturn::NOT_READY);
        }
        while state.programming.is_some() || !state.queued.is_empty() {
            state = self.shared.wait(state);
        }
        let record = state.record;
        if state.flash_error.is_none() && record.acknowledged < record.total_len {
            // Bytes are missing: the host finished too early.
            return Err(IoReturn::NOT_READY);
        }
        let flash = &self.shared.flash;
        if !self.shared.config.flash {
            // Nothing stored: the slots' CRCs, composed in image order, are
            // the whole image's; the banks stay as they are.
            let crc = state.prefix_crc.clone().finalize();
            let good = crc == image_crc32 && crc == record.image_crc32;
            let status = if good { Status::Committed } else { Status::Failed };
            state.record.status = status.into();
            flash.write_record(&state.record);
            return Ok(status);
        }
        let inactive = flash.inactive_bank();
        let crc = flash.crc32(inactive, record.total_len).map_err(|_| IoReturn::IO_ERROR)?;
        let good = state.flash_error.is_none() && crc == image_crc32 && crc == record.image_crc32;
        let status = if good {
            let bank = BankRecord {
                len: record.total_len,
                crc32: crc,
                load_address: record.load_address,
                valid: true,
            };
            flash.commit(inactive, bank).map_err(|_| IoReturn::IO_ERROR)?;
            Status::Committed
        } else {
            Status::Failed
        };
        state.record.status = status.into();
        flash.write_record(&state.record);
        let _ = flash.flush();
        Ok(status)
    }

    /// ABORT (and a lost host): the session stops, resumable.
    pub fn interrupt(&self) {
        let mut state = self.shared.lock();
        if state.record.status() == Status::Receiving {
            state.record.status = Status::Interrupted.into();
            self.shared.flash.write_record(&state.record);
        }
    }

    /// GET_STATE.
    pub fn state(&self) -> UploadState {
        let state = self.shared.lock();
        let flash = &self.shared.flash;
        let active = flash.active_bank();
        let bank = flash.bank_record(active);
        let record = state.record;
        let mut upload = UploadState::zeroed();
        upload.session = record.session;
        upload.acknowledged = record.acknowledged;
        upload.total_len = record.total_len;
        upload.set_status(record.status());
        upload.image_crc32 = record.image_crc32;
        if bank.valid {
            upload.active_len = bank.len;
            upload.active_crc32 = bank.crc32;
        }
        upload.active_bank = u32::from(active);
        upload
    }

    /// The acknowledged offset, as a completion reports it.
    pub fn acknowledged(&self) -> u64 {
        self.shared.lock().record.acknowledged
    }

    /// The format recorded for the session in progress.
    pub fn format(&self) -> Option<ImageFormat> {
        ImageFormat::try_from(self.shared.lock().record.format).ok()
    }

    /// Stops the flash worker (dropping the last clone does not: the
    /// worker holds the device, as a real device's firmware keeps running).
    pub fn shutdown(&self) {
        self.shared.lock().shutdown = true;
        self.shared.changed.notify_all();
    }

    /// One transfer's bytes, checked and collected into sectors.
    fn accept(&self, data: &[u8]) -> Receipt {
        let Some(header) = data.get(..HEADER).and_then(|b| SlotHeader::read_from_bytes(b).ok())
        else {
            return self.refuse();
        };
        let payload = &data[HEADER..];
        let length = header.length as usize;
        let partial = payload.len() < length;
        // The CRC covers the header's fields too: a flipped offset is caught
        // here, not written to the wrong place. (A transfer cut short cannot
        // be checked; the whole-image CRC at `finish` still is.)
        let payload_crc = crc32fast::hash(payload);
        let expected = slot_crc32(header.sequence, header.image_offset, header.length, payload_crc);
        if payload.len() > length || (!partial && expected != header.crc32) {
            return self.refuse();
        }
        let mut state = self.shared.lock();
        let record = state.record;
        let in_image = header
            .image_offset
            .checked_add(header.length as u64)
            .is_some_and(|end| end <= record.total_len);
        if record.status() != Status::Receiving || !in_image {
            drop(state);
            return self.refuse();
        }
        if !self.shared.config.flash {
            state.stats.transfers += 1;
            if partial {
                state.stats.partial += 1;
            }
            compose(&mut state, header.image_offset, payload.len() as u64, payload_crc);
            return Receipt::Accepted(data.len());
        }
        // Wait for room (NAK) unless this is only data already programmed.
        while state.ram_used + payload.len() > self.shared.config.ram
            && state.ram_used > 0
            && !state.shutdown
        {
            state = self.shared.wait(state);
        }
        // The session may have ended (an abort, a lost host) or changed (a
        // new image) while the transfer waited for room: its bytes belong to
        // the session they were sent for, which is no longer receiving.
        if state.record.status() != Status::Receiving || state.record.session != record.session {
            drop(state);
            return self.refuse();
        }
        state.stats.transfers += 1;
        if partial {
            state.stats.partial += 1;
        }
        self.collect(&mut state, header.image_offset, payload);
        self.shared.changed.notify_all();
        Receipt::Accepted(data.len())
    }

    fn refuse(&self) -> Receipt {
        let mut state = self.shared.lock();
        state.stats.transfers += 1;
        state.stats.refused += 1;
        Receipt::Stall
    }

    /// Puts `payload` (image bytes at `offset`) into sector buffers, queueing
    /// each sector that becomes complete.
    fn collect(&self, state: &mut State, offset: u64, payload: &[u8]) {
        let sector_size = self.shared.flash.geometry().sector_size as u64;
        let total = state.record.total_len;
        let mut at = offset;
        let mut rest = payload;
        while !rest.is_empty() {
            let sector = at / sector_size;
            let sector_start = sector * sector_size;
            let sector_len = sector_size.min(total - sector_start) as usize;
            let within = (at - sector_start) as usize;
            let n = rest.len().min(sector_len - within);
            let (head, tail) = rest.split_at(n);
            let done = sector_start + sector_len as u64 <= state.record.acknowledged
                || state.programmed.contains(&sector)
                || state.programming.as_ref().is_some_and(|run| run.contains(&sector))
                || state.queued.contains_key(&sector);
            if !done {
                let buffer =
                    state.assembling.entry(sector).or_insert_with(|| SectorBuffer::new(sector_len));
                let was_empty = buffer.filled.is_empty();
                buffer.put(within, head);
                if was_empty {
                    state.ram_used += sector_len;
                }
                if buffer.is_complete() {
                    let buffer = state.assembling.remove(&sector).expect("just filled");
                    state.queued.insert(sector, buffer.bytes);
                }
            }
            at += n as u64;
            rest = tail;
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is updated in small steps that keep it consistent; a
        // panic in one (a bug) should not wedge the device for every caller.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(guard).unwrap_or_else(|e| e.into_inner())
    }
}

impl BulkOutDevice for Bootloader {
    fn receive(&self, data: &[u8]) -> Receipt {
        self.accept(data)
    }
}

/// The flash worker: takes the lowest queued sector and every queued sector
/// contiguous with it, skips those the flash already holds, erases and
/// programs the rest in as few commands as possible (as a bootloader
/// streams a run of sectors to its flash controller), then advances the
/// acknowledged prefix.
fn program_loop(shared: &Shared) {
    let flash = &shared.flash;
    let sector_size = u64::from(flash.geometry().sector_size);
    let mut state = shared.lock();
    loop {
        if state.shutdown {
            return;
        }
        let Some(&first) = state.queued.keys().next() else {
            state = shared.wait(state);
            continue;
        };
        let mut run = Vec::new();
        let mut next = first;
        while let Some(bytes) = state.queued.remove(&next) {
            run.push(bytes);
            next += 1;
        }
        state.programming = Some(first..next);
        let session = state.record.session;
        drop(state);

        let outcome = program_run(flash, first, &run);

        state = shared.lock();
        state.programming = None;
        let held: usize = run.iter().map(Vec::len).sum();
        state.ram_used = state.ram_used.saturating_sub(held);
        if state.record.session == session {
            match outcome {
                Ok(programmed) => {
                    state.stats.sectors_programmed += programmed;
                    state.stats.sectors_skipped += run.len() as u64 - programmed;
                    state.programmed.extend(first..next);
                    advance(&mut state, sector_size);
                    flash.write_record(&state.record);
                }
                Err(error) => state.flash_error = Some(error.to_string()),
            }
        }
        shared.changed.notify_all();
    }
}

/// Writes the sectors `run` (from sector `first` on) to the inactive bank;
/// returns how many needed programming.
fn program_run(flash: &Flash, first: u64, run: &[Vec<u8>]) -> Result<u64, FlashError> {
    let sector_size = u64::from(flash.geometry().sector_size);
    let bank = flash.inactive_bank();
    let mut programmed = 0;
    let mut index = 0;
    while index < run.len() {
        // Sectors that already hold their bytes are left alone.
        let sector = first + index as u64;
        if flash.holds(bank, sector * sector_size, &run[index])? {
            index += 1;
            continue;
        }
        let mut end = index + 1;
        while end < run.len()
            && !flash.holds(bank, (first + end as u64) * sector_size, &run[end])?
        {
            end += 1;
        }
        flash.erase_sectors(bank, sector..first + end as u64)?;
        let bytes: Vec<u8> = run[index..end].concat();
        flash.program(bank, sector * sector_size, &bytes)?;
        programmed += (end - index) as u64;
        index = end;
    }
    Ok(programmed)
}

/// Without the flash: records a received stretch and extends the prefix
/// (and its CRC) over every stretch that now follows it.
fn compose(state: &mut State, offset: u64, len: u64, crc: u32) {
    if len == 0 || offset < state.record.acknowledged {
        return;
    }
    state.pieces.insert(offset, (len, crc));
    while let Some((len, crc)) = state.pieces.remove(&state.record.acknowledged) {
        state.prefix_crc.combine(&crc32fast::Hasher::new_with_initial_len(crc, len));
        state.record.acknowledged += len;
    }
}

/// Moves the acknowledged prefix over programmed sectors.
fn advance(state: &mut State, sector_size: u64) {
    let total = state.record.total_len;
    let mut acknowledged = state.record.acknowledged;
    while acknowledged < total && state.programmed.remove(&(acknowledged / sector_size)) {
        acknowledged = ((acknowledged / sector_size + 1) * sector_size).min(total);
    }
    state.record.acknowledged = acknowledged;
}

/// The bootloader as a USB device, the provider the C++ dext matches
/// (`dext/Info.plist`): vendor [`USB_VENDOR_ID`], product
/// [`USB_PRODUCT_ID`], configuration 1 with interface 0 and the bulk OUT
/// endpoint 0x01 ([`BulkOutPipe`] with its link model and faults), and the
/// vendor control requests of `dext/FwLoaderDeviceProtocol.h`. A request
/// the device refuses answers with the bootloader's own IOReturn, which the
/// dext's `DeviceRequest` returns as is (as the Rust model returns it).
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub struct BootloaderUsb {
    pub bootloader: Bootloader,
    pub pipe: dextlink::sim::usb::BulkOutPipe,
    descriptors: dextlink_sim::driverkit::usb::SimpleDescriptors,
}

/// pid.codes' open-source vendor id.
pub const USB_VENDOR_ID: u16 = 0x1209;
/// The fwloader bootloader's product id (in `dext/Info.plist` too).
pub const USB_PRODUCT_ID: u16 = 0x0002;
/// bRequest codes and data stages of `dext/FwLoaderDeviceProtocol.h`.
pub mod request {
    pub const VENDOR_OUT: u8 = 0x40;
    pub const VENDOR_IN: u8 = 0xc0;
    pub const BEGIN: u8 = 0x01;
    pub const FINISH: u8 = 0x02;
    pub const GET_STATE: u8 = 0x03;
    pub const ABORT: u8 = 0x04;
}

#[cfg(target_os = "linux")]
impl BootloaderUsb {
    pub fn new(bootloader: Bootloader, pipe: dextlink::sim::usb::BulkOutPipe) -> BootloaderUsb {
        BootloaderUsb {
            bootloader,
            pipe,
            descriptors: dextlink_sim::driverkit::usb::SimpleDescriptors {
                id_vendor: USB_VENDOR_ID,
                id_product: USB_PRODUCT_ID,
                bcd_device: 0x0100,
                configuration_value: 1,
                interface_number: 0,
                interface_class: 0xff,
                bulk_out_endpoints: vec![0x01],
            },
        }
    }

    /// What the dext's personality is matched against.
    pub fn identity(&self) -> dextlink_sim::usb_match::UsbInterfaceIdentity {
        dextlink_sim::usb_match::UsbInterfaceIdentity {
            id_vendor: USB_VENDOR_ID,
            id_product: USB_PRODUCT_ID,
            b_configuration_value: 1,
            b_interface_number: 0,
        }
    }
}

#[cfg(target_os = "linux")]
impl dextlink_sim::driverkit::usb::UsbDevice for BootloaderUsb {
    fn device_descriptor(&self) -> [u8; 18] {
        self.descriptors.device_descriptor()
    }

    fn configuration_descriptor(&self) -> Vec<u8> {
        self.descriptors.configuration_descriptor()
    }

    fn control_in(
        &self,
        setup: &dextlink_sim::driverkit::usb::SetupPacket,
        data: &mut [u8],
    ) -> Result<usize, IoReturn> {
        if setup.request_type != request::VENDOR_IN || setup.request != request::GET_STATE {
            return Err(IoReturn::USB_HOST_PIPE_STALLED);
        }
        let state = self.bootloader.state();
        let bytes = state.as_bytes();
        if usize::from(setup.length) != bytes.len() || data.len() < bytes.len() {
            return Err(IoReturn::USB_HOST_PIPE_STALLED);
        }
        data[..bytes.len()].copy_from_slice(bytes);
        Ok(bytes.len())
    }

    fn control_out(
        &self,
        setup: &dextlink_sim::driverkit::usb::SetupPacket,
        data: &[u8],
    ) -> Result<(), IoReturn> {
        if setup.request_type != request::VENDOR_OUT {
            return Err(IoReturn::USB_HOST_PIPE_STALLED);
        }
        match setup.request {
            request::BEGIN => {
                let info = ImageInfo::read_from_bytes(data)
                    .map_err(|_| IoReturn::USB_HOST_PIPE_STALLED)?;
                self.bootloader.begin(&info).map(|_| ())
            }
            request::FINISH => {
                let crc: [u8; 4] = data.try_into().map_err(|_| IoReturn::USB_HOST_PIPE_STALLED)?;
                self.bootloader.finish(u32::from_le_bytes(crc)).map(|_| ())
            }
            request::ABORT if data.is_empty() => {
                self.bootloader.interrupt();
                Ok(())
            }
            _ => Err(IoReturn::USB_HOST_PIPE_STALLED),
        }
    }

    fn bulk_out_pipe(&self, address: u8) -> Option<dextlink::sim::usb::BulkOutPipe> {
        (address == 0x01).then(|| self.pipe.clone())
    }
}

//! Firmware loader over DriverKit: the schema (`fwloader.dextlink`), the
//! dext's C++ sources written against the generated header (`dext/`), the
//! same dext modelled in Rust for the simulator ([`dext`]), a simulated USB
//! bootloader with a two-bank flash ([`device`]), the simulated device put
//! together ([`sim`]), and the `fwupload` tool.

dextlink::interface!("fwloader.dextlink");

pub mod device;
pub mod dext;
pub mod sim;

use dextlink::image::Format;
use dextlink::staging::{
    Acknowledgement, Begun, ImageIdentity, SlotFields, StagingDevice, Verdict,
};
use dextlink::{Error, Mapping, Pending, ReadWrite, Transport};

pub use crate::fw_loader::{
    FwLoader, ImageFormat, ImageInfo, SlotHeader, Status, SubmitCompletion, UploadState,
};

/// The schema's name for an image file format.
pub fn image_format(format: Format) -> ImageFormat {
    match format {
        Format::Bin => ImageFormat::Raw,
        Format::Hex => ImageFormat::IntelHex,
        Format::Elf => ImageFormat::Elf,
        Format::Uf2 => ImageFormat::Uf2,
        Format::Srec => ImageFormat::Srec,
    }
}

/// The fwloader user client speaks the staging protocol as the schema
/// declares it: `begin`, `submit` into the `staging` ring, `finish`, `abort`.
impl<T: Transport> StagingDevice for FwLoader<T> {
    type Header = SlotHeader;
    type Submitted = SubmitCompletion;
    const SLOT_COUNT: u32 = fw_loader::SLOT_COUNT;
    const SLOT_SIZE: u32 = fw_loader::SLOT_SIZE;

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
        info.set_format(image_format(image.format));
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
            status => Ok(Verdict::Refused {
                reason: format!("the device answered {status:?} (whole-image CRC mismatch)"),
            }),
        }
    }

    fn abort(&self) -> Result<(), Error> {
        FwLoader::abort(self)
    }
}

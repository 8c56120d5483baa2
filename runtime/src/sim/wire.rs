//! The out-of-process simulator's protocol: frames on a Unix stream socket.
//!
//! A frame is a 16-byte header (kind, body length, request or completion
//! id) and a body of little-endian fields. A memory-type reply carries the
//! memfd as `SCM_RIGHTS` ancillary data, attached to its first byte, so the
//! reader takes each header with `recvmsg` and the body with plain reads.
//! Both ends treat the other as untrusted: lengths are bounded and every
//! body is parsed with checks, so a broken peer is a protocol error, never
//! a panic or an unbounded allocation.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::host::{CallRequest, CallResponse, OutputRequest};
use crate::IoReturn;

/// Bodies above this are refused: far above any call DriverKit allows
/// (structure sizes are u32 but the simulator's users stage bulk data
/// through memory types), and small enough that a corrupt length cannot
/// exhaust memory.
pub(crate) const MAX_BODY: usize = 64 << 20;

/// A peer that went away is an error from `sendmsg`, not SIGPIPE (where
/// the flag exists; elsewhere Rust programs ignore SIGPIPE).
#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_FLAGS: SendFlags = SendFlags::NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SEND_FLAGS: SendFlags = SendFlags::empty();

/// Received descriptors are close-on-exec, so a server's children do not
/// inherit its clients' memory (where the flag exists).
#[cfg(any(target_os = "linux", target_os = "android"))]
const RECV_FLAGS: RecvFlags = RecvFlags::CMSG_CLOEXEC;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const RECV_FLAGS: RecvFlags = RecvFlags::empty();

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    /// Client → dext: `IOServiceOpen` (kind, entitled).
    Open = 1,
    /// Dext → client: the open's status.
    OpenReply = 2,
    /// Client → dext: one external method call.
    Call = 3,
    /// Dext → client: its answer.
    Reply = 4,
    /// Dext → client: an async completion; the id is the call's.
    Completion = 5,
    /// Client → dext: `IOConnectMapMemory64`.
    Map = 6,
    /// Dext → client: status, length, read-only, identity; the memfd attached.
    MapReply = 7,
}

impl Kind {
    fn from_wire(value: u32) -> Option<Kind> {
        Some(match value {
            1 => Kind::Open,
            2 => Kind::OpenReply,
            3 => Kind::Call,
            4 => Kind::Reply,
            5 => Kind::Completion,
            6 => Kind::Map,
            7 => Kind::MapReply,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Header {
    kind: u32,
    len: u32,
    id: u64,
}

/// One frame as read.
#[derive(Debug)]
pub(crate) struct Frame {
    pub kind: Kind,
    pub id: u64,
    pub body: Vec<u8>,
    /// Descriptors that came with the frame.
    pub fds: Vec<OwnedFd>,
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Writes one frame, with `fd` attached if given. One `sendmsg` for the
/// header (with the descriptor), then the body.
pub(crate) fn write_frame(
    stream: &UnixStream,
    kind: Kind,
    id: u64,
    body: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let len = u32::try_from(body.len()).ok().filter(|&n| n as usize <= MAX_BODY);
    let len = len.ok_or_else(|| invalid(format!("frame body of {} bytes", body.len())))?;
    let header = Header { kind: kind as u32, len, id };
    let header = header.as_bytes();
    let mut sent = 0;
    if let Some(fd) = fd {
        let fds = [fd];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(invalid("no room for a descriptor"));
        }
        sent = sendmsg(stream, &[IoSlice::new(header)], &mut control, SEND_FLAGS)?;
        if sent == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    let mut writer = stream;
    writer.write_all(&header[sent..])?;
    writer.write_all(body)
}

/// Reads one frame; `Ok(None)` at a clean end of stream (between frames).
pub(crate) fn read_frame(stream: &UnixStream) -> io::Result<Option<Frame>> {
    let mut header = [0u8; size_of::<Header>()];
    let mut fds = Vec::new();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = recvmsg(stream, &mut [IoSliceMut::new(&mut header)], &mut control, RECV_FLAGS)?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if received.bytes == 0 {
        return Ok(None);
    }
    let mut reader = stream;
    reader.read_exact(&mut header[received.bytes..])?;
    let header = Header::read_from_bytes(&header).map_err(|_| invalid("short header"))?;
    let kind = Kind::from_wire(header.kind)
        .ok_or_else(|| invalid(format!("unknown frame kind {}", header.kind)))?;
    let len = header.len as usize;
    if len > MAX_BODY {
        return Err(invalid(format!("frame body of {len} bytes")));
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(Some(Frame { kind, id: header.id, body, fds }))
}

/// Builds a body.
#[derive(Debug, Default)]
pub(crate) struct Body(pub Vec<u8>);

impl Body {
    pub fn u32(mut self, value: u32) -> Body {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub fn u64(mut self, value: u64) -> Body {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub fn u64s(mut self, values: &[u64]) -> Body {
        self = self.u32(values.len() as u32);
        for value in values {
            self = self.u64(*value);
        }
        self
    }

    pub fn bytes(mut self, bytes: &[u8]) -> Body {
        self = self.u32(bytes.len() as u32);
        self.0.extend_from_slice(bytes);
        self
    }
}

/// Parses a body; every read checks what is left.
#[derive(Debug)]
pub(crate) struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    pub fn new(body: &'a [u8]) -> Fields<'a> {
        Fields(body)
    }

    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(invalid("truncated frame body"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    pub fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    pub fn u64s(&mut self) -> io::Result<Vec<u64>> {
        let count = self.u32()? as usize;
        if count > self.0.len() / 8 {
            return Err(invalid("truncated frame body"));
        }
        (0..count).map(|_| self.u64()).collect()
    }

    pub fn bytes(&mut self) -> io::Result<Vec<u8>> {
        let len = self.u32()? as usize;
        Ok(self.take(len)?.to_vec())
    }

    /// Fails if anything is left: a frame of the wrong shape.
    pub fn end(self) -> io::Result<()> {
        if self.0.is_empty() { Ok(()) } else { Err(invalid("trailing bytes in frame body")) }
    }
}

const OUTPUT_NONE: u32 = 0;
const OUTPUT_BUFFER: u32 = 1;
const OUTPUT_VARIABLE: u32 = 2;

/// A call's body: whether it is async, then the request.
pub(crate) fn encode_call(request: &CallRequest, is_async: bool) -> Vec<u8> {
    let (output_kind, buffer): (u32, &[u8]) = match &request.output {
        OutputRequest::None => (OUTPUT_NONE, &[]),
        OutputRequest::Buffer(buffer) => (OUTPUT_BUFFER, buffer),
        OutputRequest::Variable => (OUTPUT_VARIABLE, &[]),
    };
    Body::default()
        .u32(request.selector)
        .u32(u32::from(is_async))
        .u32(request.scalar_output_count)
        .u32(output_kind)
        .u64s(&request.scalar_input)
        .bytes(&request.struct_input)
        .bytes(buffer)
        .0
}

pub(crate) fn decode_call(body: &[u8]) -> io::Result<(CallRequest, bool)> {
    let mut fields = Fields::new(body);
    let selector = fields.u32()?;
    let is_async = fields.u32()? != 0;
    let scalar_output_count = fields.u32()?;
    let output_kind = fields.u32()?;
    let scalar_input = fields.u64s()?;
    let struct_input = fields.bytes()?;
    let buffer = fields.bytes()?;
    fields.end()?;
    let output = match output_kind {
        OUTPUT_NONE => OutputRequest::None,
        OUTPUT_BUFFER => OutputRequest::Buffer(buffer),
        OUTPUT_VARIABLE => OutputRequest::Variable,
        other => return Err(invalid(format!("unknown output kind {other}"))),
    };
    let request = CallRequest { selector, scalar_input, struct_input, scalar_output_count, output };
    Ok((request, is_async))
}

pub(crate) fn encode_response(response: &CallResponse) -> Vec<u8> {
    Body::default()
        .u32(response.status.0 as u32)
        .u64(response.struct_output_size)
        .u64s(&response.scalar_output)
        .bytes(&response.output)
        .0
}

pub(crate) fn decode_response(body: &[u8]) -> io::Result<CallResponse> {
    let mut fields = Fields::new(body);
    let status = IoReturn(fields.u32()? as i32);
    let struct_output_size = fields.u64()?;
    let scalar_output = fields.u64s()?;
    let output = fields.bytes()?;
    fields.end()?;
    Ok(CallResponse { status, scalar_output, struct_output_size, output })
}

/// The descriptor a memory reply carries, if any.
pub(crate) fn fd_of(frame: &mut Frame) -> Option<OwnedFd> {
    frame.fds.drain(..).next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_responses_round_trip() {
        let request = CallRequest {
            selector: 7,
            scalar_input: vec![1, u64::MAX],
            struct_input: vec![9; 5000],
            scalar_output_count: 3,
            output: OutputRequest::Buffer(vec![1, 2, 3]),
        };
        assert_eq!(decode_call(&encode_call(&request, true)).unwrap(), (request, true));
        let response = CallResponse {
            status: IoReturn::BAD_ARGUMENT,
            scalar_output: vec![4],
            struct_output_size: 3,
            output: vec![5, 6, 7],
        };
        assert_eq!(decode_response(&encode_response(&response)).unwrap(), response);
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        let good = encode_call(
            &CallRequest {
                selector: 1,
                scalar_input: vec![1, 2],
                struct_input: vec![3; 10],
                scalar_output_count: 0,
                output: OutputRequest::Variable,
            },
            false,
        );
        for cut in 0..good.len() {
            assert!(decode_call(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(decode_call(&long).is_err());
        // A count claiming more scalars than there are bytes.
        let lying = Body::default().u32(1).u32(0).u32(0).u32(0).u32(u32::MAX).0;
        assert!(decode_call(&lying).is_err());
    }

    #[test]
    fn frames_carry_descriptors() {
        let (a, b) = UnixStream::pair().unwrap();
        let memory = crate::sim::SharedMemory::new(4096).unwrap();
        write_frame(&a, Kind::MapReply, 9, b"body", Some(memory.fd())).unwrap();
        write_frame(&a, Kind::Reply, 10, b"", None).unwrap();
        let mut first = read_frame(&b).unwrap().unwrap();
        assert_eq!(
            (first.kind, first.id, first.body.as_slice()),
            (Kind::MapReply, 9, &b"body"[..])
        );
        assert!(fd_of(&mut first).is_some());
        let second = read_frame(&b).unwrap().unwrap();
        assert_eq!((second.kind, second.id, second.fds.len()), (Kind::Reply, 10, 0));
        drop(a);
        assert!(read_frame(&b).unwrap().is_none());
    }
}

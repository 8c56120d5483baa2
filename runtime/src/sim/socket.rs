//! The out-of-process simulator: a dext server on a Unix socket, and the
//! transport clients use to reach it.
//!
//! Each connection is one user client, served on a thread of its own, so
//! calls into it run one at a time (docs/driverkit.md §2.2-11) while other
//! connections run side by side. Completions are written back on the
//! connection whenever the dext sends them; once the client is gone they
//! are dropped, as DriverKit drops completions for a dead client (§4.3-5).

use std::collections::HashMap;
use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::host::{self, CallRequest};
use super::memory::{ClientMap, ClientMaps};
use super::wire::{self, Body, Fields, Frame, Kind};
use super::{ClientMemory, Driver, OpenOptions, Simulator, UserClient, open_error};
use crate::server::AsyncCompletion;
use crate::{Call, CallError, CompletionSlot, Error, IoReturn, MappedRegion, Reply, Transport};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections leave their data consistent; ignore poisoning.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<D: Driver> Simulator<D> {
    /// Serves clients on `listener` until accepting fails: one thread and
    /// one user client per connection. A client that dies or sends garbage
    /// ends its own connection only.
    pub fn serve(&self, listener: UnixListener) -> io::Result<()> {
        loop {
            let (stream, _) = listener.accept()?;
            let simulator = self.clone();
            std::thread::Builder::new()
                .name("dext connection".to_string())
                .spawn(move || simulator.serve_connection(stream))?;
        }
    }

    /// Binds `path` (replacing a stale socket file) and serves on it, listed
    /// in the [`registry`](super::registry) under the service name for as
    /// long as it serves, so that [`sim::open`](super::open) finds it.
    pub fn serve_path(&self, path: &Path) -> io::Result<()> {
        match std::fs::remove_file(path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        let listener = UnixListener::bind(path)?;
        let _listed = super::registry::Registry::from_env().register(self.service(), path)?;
        self.serve(listener)
    }

    fn serve_connection(&self, stream: UnixStream) {
        // Errors end the connection; the dext carries on with its others.
        let _ = self.serve_stream(stream);
    }

    fn serve_stream(&self, stream: UnixStream) -> io::Result<()> {
        let writer = Arc::new(Mutex::new(stream.try_clone()?));
        let send = |kind, id, body: &[u8], fd| {
            let stream = lock(&writer);
            wire::write_frame(&stream, kind, id, body, fd)
        };
        // The first frame opens the user client.
        let Some(open) = wire::read_frame(&stream)? else { return Ok(()) };
        if open.kind != Kind::Open {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "expected an open"));
        }
        let mut fields = Fields::new(&open.body);
        let options = OpenOptions { kind: fields.u32()?, entitled: fields.u32()? != 0 };
        fields.end()?;
        let mut user_client = match self.new_user_client(&options) {
            Ok(user_client) => user_client,
            Err(code) => {
                let body = Body::default().u32(code.0 as u32).0;
                return send(Kind::OpenReply, open.id, &body, None);
            }
        };
        send(Kind::OpenReply, open.id, &Body::default().u32(0).0, None)?;
        let result = self.run_user_client(&stream, &writer, &mut user_client);
        user_client.stop();
        result
    }

    fn run_user_client(
        &self,
        stream: &UnixStream,
        writer: &Arc<Mutex<UnixStream>>,
        user_client: &mut D::UserClient,
    ) -> io::Result<()> {
        while let Some(frame) = wire::read_frame(stream)? {
            match frame.kind {
                Kind::Call => {
                    let (request, is_async) = wire::decode_call(&frame.body)?;
                    let completion = is_async.then(|| {
                        let writer = Arc::clone(writer);
                        let id = frame.id;
                        AsyncCompletion::new(move |status: IoReturn, values: &[u64]| {
                            let body = Body::default().u32(status.0 as u32).u64s(values).0;
                            // A client that went away: the completion is a no-op (§4.3-5).
                            let stream = lock(&writer);
                            let _ = wire::write_frame(&stream, Kind::Completion, id, &body, None);
                        })
                    });
                    let response = host::execute(user_client, request, completion);
                    let body = wire::encode_response(&response);
                    wire::write_frame(&lock(writer), Kind::Reply, frame.id, &body, None)?;
                }
                Kind::Map => {
                    let mut fields = Fields::new(&frame.body);
                    let memory_type = fields.u32()?;
                    fields.end()?;
                    let stream = lock(writer);
                    match user_client.copy_client_memory(u64::from(memory_type)) {
                        Ok(ClientMemory { memory, read_only }) => {
                            let body = Body::default()
                                .u32(0)
                                .u64(memory.len() as u64)
                                .u32(u32::from(read_only))
                                .u64(memory.identity())
                                .0;
                            let fd = Some(memory.fd());
                            wire::write_frame(&stream, Kind::MapReply, frame.id, &body, fd)?;
                        }
                        Err(code) => {
                            let body = Body::default().u32(code.0 as u32).u64(0).u32(0).u64(0).0;
                            wire::write_frame(&stream, Kind::MapReply, frame.id, &body, None)?;
                        }
                    }
                }
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unexpected {other:?} frame from a client"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A connection to a dext server process: the generated client's
/// [`Transport`] on Linux, as the IOKit backend is on a Mac.
///
/// A reader thread takes replies and completions off the socket. When the
/// server goes away (it exited, was killed, or broke the protocol), calls in
/// flight and every outstanding completion end with [`Error::Disconnected`];
/// nothing waits forever.
pub struct SocketTransport {
    shared: Arc<Shared>,
    writer: Mutex<UnixStream>,
    reader: Option<JoinHandle<()>>,
    service: String,
    /// This client's mappings of the server's memory.
    maps: ClientMaps,
}

impl std::fmt::Debug for SocketTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketTransport").field("service", &self.service).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    arrived: Condvar,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Calls waiting for their reply frame, by id.
    replies: HashMap<u64, Option<Frame>>,
    /// Async calls whose completion may still arrive, by call id.
    completions: HashMap<u64, CompletionSlot>,
    /// Why the connection ended, once it has.
    closed: Option<Error>,
}

impl SocketTransport {
    /// Connects to the dext server at `path` and opens a user client.
    pub fn connect(path: &Path, options: &OpenOptions) -> Result<SocketTransport, Error> {
        let service = path.display().to_string();
        let stream = UnixStream::connect(path).map_err(|error| Error::NotFound {
            service: service.clone(),
            hint: format!(" (no simulator is listening there: {error})"),
        })?;
        let reader_stream = stream.try_clone().map_err(transport_error)?;
        let shared = Arc::new(Shared::default());
        let on_reader = Arc::clone(&shared);
        let reader = std::thread::Builder::new()
            .name("dextlink sim client".to_string())
            .spawn(move || read_loop(&reader_stream, &on_reader))
            .map_err(transport_error)?;
        let transport = SocketTransport {
            shared,
            writer: Mutex::new(stream),
            reader: Some(reader),
            service,
            maps: ClientMaps::default(),
        };
        let body = Body::default().u32(options.kind).u32(u32::from(options.entitled)).0;
        let reply = transport.request(Kind::Open, &body, None)?;
        let mut fields = Fields::new(&reply.body);
        let status = IoReturn(fields.u32().map_err(transport_error)? as i32);
        if !status.is_success() {
            return Err(open_error(&transport.service, status));
        }
        Ok(transport)
    }

    /// Sends a frame and waits for the reply with the same id. `slot`, for
    /// an async call, is registered before sending so that no completion can
    /// overtake it.
    fn request(
        &self,
        kind: Kind,
        body: &[u8],
        slot: Option<CompletionSlot>,
    ) -> Result<Frame, Error> {
        let id = {
            let mut state = lock(&self.shared.state);
            if let Some(error) = &state.closed {
                return Err(error.clone());
            }
            state.next_id += 1;
            let id = state.next_id;
            state.replies.insert(id, None);
            if let Some(slot) = slot {
                state.completions.retain(|_, s| !s.is_finished() && !s.is_abandoned());
                state.completions.insert(id, slot);
            }
            id
        };
        let sent = wire::write_frame(&lock(&self.writer), kind, id, body, None);
        let mut state = lock(&self.shared.state);
        if sent.is_err() {
            state.replies.remove(&id);
            // The reader sees the same end of stream and fails the rest.
            return Err(state.closed.clone().unwrap_or(Error::Disconnected));
        }
        loop {
            if let Some(Some(_)) = state.replies.get(&id) {
                let frame = state.replies.remove(&id).flatten().expect("present");
                return Ok(frame);
            }
            if let Some(error) = state.closed.clone() {
                state.replies.remove(&id);
                return Err(error);
            }
            state = self.shared.arrived.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn transport_error(error: io::Error) -> Error {
    Error::Transport(format!("simulator connection: {error}"))
}

/// Routes frames from the server until the connection ends, then fails
/// everything still waiting.
fn read_loop(stream: &UnixStream, shared: &Shared) {
    let end = loop {
        match wire::read_frame(stream) {
            Ok(Some(frame)) => {
                if let Err(error) = route(frame, shared) {
                    break transport_error(error);
                }
            }
            Ok(None) => break Error::Disconnected,
            // A reset connection is the server dying mid-frame.
            Err(error) if error.kind() != io::ErrorKind::InvalidData => break Error::Disconnected,
            Err(error) => break transport_error(error),
        }
    };
    let slots: Vec<CompletionSlot> = {
        let mut state = lock(&shared.state);
        state.closed = Some(end);
        state.completions.drain().map(|(_, slot)| slot).collect()
    };
    shared.arrived.notify_all();
    for slot in slots {
        slot.fail(Error::Disconnected);
    }
}

fn route(frame: Frame, shared: &Shared) -> io::Result<()> {
    if frame.kind == Kind::Completion {
        let mut fields = Fields::new(&frame.body);
        let status = IoReturn(fields.u32()? as i32);
        let values = fields.u64s()?;
        fields.end()?;
        let slot = lock(&shared.state).completions.remove(&frame.id);
        // A completion for a call nobody waits for is dropped; more than one
        // for the same call only counts once (`CompletionSlot` ignores the rest).
        if let Some(slot) = slot {
            slot.complete(status, &values);
        }
        return Ok(());
    }
    let mut state = lock(&shared.state);
    match state.replies.get_mut(&frame.id) {
        Some(waiting @ None) => *waiting = Some(frame),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected {:?} frame {}", frame.kind, frame.id),
            ));
        }
    }
    drop(state);
    shared.arrived.notify_all();
    Ok(())
}

// SAFETY: every region comes from `ClientMaps`: a `ClientMap` is this
// process's own `mmap` of the memfd the server sent, `PROT_READ` and also
// `PROT_WRITE` unless read-only, of the length the server gave (a length the
// file does not have faults on access, never a wild access: the pages are
// the file's); it stays mapped until the last region of it is dropped (each
// region's guard borrows `self.maps`). The table is keyed by the server's
// identity of the descriptor, so the same memory mapped again is the same
// range, and distinct mappings are distinct `mmap`s, which never overlap.
// Nothing here makes a reference into a mapping.
unsafe impl Transport for SocketTransport {
    fn call(&self, mut call: Call<'_>) -> Result<Reply, CallError> {
        let request = CallRequest::from_call(&call);
        let slot = call.completion.take();
        let body = wire::encode_call(&request, slot.is_some());
        let reply = self.request(Kind::Call, &body, slot).map_err(CallError::Transport)?;
        if reply.kind != Kind::Reply {
            return Err(CallError::Transport(Error::Transport(format!(
                "simulator protocol: a {:?} frame answered a call",
                reply.kind
            ))));
        }
        let response = wire::decode_response(&reply.body)
            .map_err(|error| CallError::Transport(transport_error(error)))?;
        response.apply(call)
    }

    fn map_memory(&self, memory_type: u32) -> Result<MappedRegion<'_>, Error> {
        let body = Body::default().u32(memory_type).0;
        let mut reply = self.request(Kind::Map, &body, None)?;
        let mut fields = Fields::new(&reply.body);
        let parsed = (|| {
            let status = IoReturn(fields.u32()? as i32);
            let len = fields.u64()?;
            let read_only = fields.u32()? != 0;
            let identity = fields.u64()?;
            Ok::<_, io::Error>((status, len, read_only, identity))
        })();
        let (status, len, read_only, identity) = parsed.map_err(transport_error)?;
        if !status.is_success() {
            return Err(Error::Memory {
                memory_type,
                detail: format!("CopyClientMemoryForType failed: {status}"),
            });
        }
        let memory_error = |detail: String| Error::Memory { memory_type, detail };
        self.maps.region(identity, || {
            let fd = wire::fd_of(&mut reply)
                .ok_or_else(|| memory_error("the simulator sent no descriptor".to_string()))?;
            let len = usize::try_from(len).map_err(|_| memory_error(format!("{len} bytes")))?;
            ClientMap::new(&fd, len, read_only)
                .map_err(|error| memory_error(format!("mapping failed: {error}")))
        })
    }
}

impl Drop for SocketTransport {
    fn drop(&mut self) {
        // Closing the socket ends the server's side and our reader, which
        // fails what is still outstanding with `Disconnected`.
        let _ = lock(&self.writer).shutdown(std::net::Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

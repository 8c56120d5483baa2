//! The host side of the C++ DriverKit runtime: load a compiled dext, make
//! and start its services, open user clients and call them, as the kernel
//! does on a Mac. This is a safe wrapper over the C ABI of
//! `driverkit/include/dextlink_host.h`; the unsafe FFI stays in this module.
//!
//! Process-wide state: the runtime has one class registry, one log sink and
//! one completion sink per process (a dext is a process on a Mac too), so
//! the leak report counts every object of every loaded dext.

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::fmt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use dextlink::IoReturn;

pub mod usb;

mod ffi {
    use std::ffi::{c_char, c_int, c_void};

    #[repr(C)]
    pub struct HostObject {
        _private: [u8; 0],
    }

    pub type LogSink = unsafe extern "C" fn(context: *mut c_void, kind: u8, message: *const c_char);
    pub type CompletionSink = unsafe extern "C" fn(
        context: *mut c_void,
        reference: u64,
        status: i32,
        values: *const u64,
        count: u32,
    );

    /// `dextlink_host_call`.
    #[repr(C)]
    pub struct HostCall {
        pub selector: u64,
        pub scalar_input: *const u64,
        pub scalar_input_count: u32,
        pub structure_input: *const c_void,
        pub structure_input_length: u64,
        pub scalar_output: *mut u64,
        pub scalar_output_count: u32,
        pub structure_output: *mut c_void,
        pub structure_output_buffer_length: u64,
        pub structure_output_capacity: u64,
        pub structure_output_length: u64,
        pub is_async: c_int,
        pub async_reference: u64,
        pub structure_output_set: c_int,
    }

    /// `dextlink_host_memory`.
    #[repr(C)]
    pub struct HostMemory {
        pub fd: c_int,
        pub offset: u64,
        pub length: u64,
        pub read_only: c_int,
    }

    unsafe extern "C" {
        pub fn dextlink_host_set_log_sink(sink: Option<LogSink>, context: *mut c_void);
        pub fn dextlink_host_set_completion_sink(
            sink: Option<CompletionSink>,
            context: *mut c_void,
        );
        pub fn dextlink_host_dictionary_create() -> *mut HostObject;
        pub fn dextlink_host_dictionary_set_string(
            dictionary: *mut HostObject,
            key: *const c_char,
            value: *const c_char,
        ) -> i32;
        pub fn dextlink_host_dictionary_set_number(
            dictionary: *mut HostObject,
            key: *const c_char,
            value: u64,
        ) -> i32;
        pub fn dextlink_host_dictionary_set_bool(
            dictionary: *mut HostObject,
            key: *const c_char,
            value: c_int,
        ) -> i32;
        pub fn dextlink_host_dictionary_set_object(
            dictionary: *mut HostObject,
            key: *const c_char,
            value: *mut HostObject,
        ) -> i32;
        pub fn dextlink_host_array_create() -> *mut HostObject;
        pub fn dextlink_host_array_append(array: *mut HostObject, value: *mut HostObject) -> i32;
        pub fn dextlink_host_string_create(value: *const c_char) -> *mut HostObject;
        pub fn dextlink_host_number_create(value: u64) -> *mut HostObject;
        pub fn dextlink_host_bool_create(value: c_int) -> *mut HostObject;
        pub fn dextlink_host_data_create(bytes: *const c_void, length: usize) -> *mut HostObject;
        pub fn dextlink_host_class_exists(class_name: *const c_char) -> c_int;
        pub fn dextlink_host_class_name(object: *const HostObject) -> *const c_char;
        pub fn dextlink_host_is_kind_of(
            object: *const HostObject,
            class_name: *const c_char,
        ) -> c_int;
        pub fn dextlink_host_service_start(
            personality: *mut HostObject,
            service: *mut *mut HostObject,
        ) -> i32;
        pub fn dextlink_host_service_is_registered(service: *const HostObject) -> c_int;
        pub fn dextlink_host_provider(service: *const HostObject) -> *mut HostObject;
        pub fn dextlink_host_new_user_client(
            service: *mut HostObject,
            kind: u32,
            client: *mut *mut HostObject,
        ) -> i32;
        pub fn dextlink_host_stop(service: *mut HostObject) -> i32;
        pub fn dextlink_host_release(object: *mut HostObject);
        pub fn dextlink_host_external_method(client: *mut HostObject, call: *mut HostCall) -> i32;
        pub fn dextlink_host_copy_client_memory(
            client: *mut HostObject,
            kind: u64,
            memory: *mut HostMemory,
        ) -> i32;
        pub fn dextlink_host_leak_report(buffer: *mut c_char, size: usize) -> usize;
    }
}

/// Why a dext library could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Unreadable { path: PathBuf, error: std::io::Error },
    /// The file is not an ELF shared object (e.g. an executable, an object
    /// file or a static archive).
    NotASharedLibrary { path: PathBuf, found: &'static str },
    /// The dext uses symbols nothing in this process defines: DriverKit API
    /// this runtime lacks, or a library the dext needs but was not linked with.
    MissingSymbols { path: PathBuf, symbols: Vec<String>, message: String },
    /// Anything else `dlopen` refused.
    Dlopen { path: PathBuf, message: String },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Unreadable { path, error } => {
                write!(f, "cannot read dext {}: {error}", path.display())
            }
            LoadError::NotASharedLibrary { path, found } => {
                write!(
                    f,
                    "{} is not a shared library (found {found}); build the dext with -shared -fPIC",
                    path.display()
                )
            }
            LoadError::MissingSymbols { path, symbols, .. } => write!(
                f,
                "dext {} needs symbols this process does not define: {}",
                path.display(),
                symbols.join(", ")
            ),
            LoadError::Dlopen { path, message } => {
                write!(f, "cannot load dext {}: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// A dext loaded into this process. Its classes are registered by name while
/// it is loaded; it stays loaded for the rest of the process (objects it made
/// may outlive any handle, and their code and metaclasses live in it).
#[derive(Debug)]
pub struct Library {
    path: PathBuf,
}

impl Library {
    /// Loads the dext at `path` (`dlopen` with every symbol bound now).
    pub fn load(path: &Path) -> Result<Library, LoadError> {
        let mut header = [0u8; 18];
        let read = std::fs::File::open(path).and_then(|mut file| {
            use std::io::Read;
            let mut filled = 0;
            while filled < header.len() {
                match file.read(&mut header[filled..])? {
                    0 => break,
                    n => filled += n,
                }
            }
            Ok(filled)
        });
        let filled =
            read.map_err(|error| LoadError::Unreadable { path: path.to_owned(), error })?;
        if let Some(found) = not_a_shared_library(&header[..filled]) {
            return Err(LoadError::NotASharedLibrary { path: path.to_owned(), found });
        }
        // dlopen searches the library path for a name without a slash;
        // a dext named on a command line is a file here.
        let bytes = path.as_os_str().as_encoded_bytes();
        let file_here;
        let bytes = if bytes.contains(&b'/') {
            bytes
        } else {
            file_here = [b"./", bytes].concat();
            &file_here[..]
        };
        let c_path = CString::new(bytes).map_err(|_| LoadError::Dlopen {
            path: path.to_owned(),
            message: "the path contains a NUL byte".into(),
        })?;
        // SAFETY: c_path is a NUL-terminated string; loading runs the dext's
        // static constructors, which register its classes with this
        // process's runtime (what a dext's image does on a Mac too).
        let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            let message = dlerror_message();
            let symbols = undefined_symbols(&message);
            return Err(if symbols.is_empty() {
                LoadError::Dlopen { path: path.to_owned(), message }
            } else {
                LoadError::MissingSymbols { path: path.to_owned(), symbols, message }
            });
        }
        Ok(Library { path: path.to_owned() })
    }

    /// Where it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn dlerror_message() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string valid until
    // the next dl* call on this thread; it is copied at once.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        return "dlopen failed without a message".into();
    }
    // SAFETY: non-NULL, NUL-terminated (above).
    unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned()
}

/// glibc reports one missing symbol per dlopen: "…: undefined symbol: NAME".
fn undefined_symbols(message: &str) -> Vec<String> {
    message
        .split("undefined symbol: ")
        .skip(1)
        .filter_map(|rest| rest.split([',', ' ', '\n']).next())
        .filter(|name| !name.is_empty())
        .map(|name| demangled(name).unwrap_or_else(|| name.to_owned()))
        .collect()
}

/// `_ZN…` names as `name (mangled)` is what a C++ author can act on; a
/// plain demangler is not a dependency here, so the mangled name is kept
/// and marked.
fn demangled(name: &str) -> Option<String> {
    name.starts_with("_Z").then(|| format!("{name} (C++ mangled; `c++filt {name}` reads it)"))
}

fn not_a_shared_library(header: &[u8]) -> Option<&'static str> {
    if header.len() < 18 || &header[..4] != b"\x7fELF" {
        return Some(if header.starts_with(b"!<arch>") {
            "a static archive"
        } else if header.starts_with(b"#!") {
            "a script"
        } else {
            "no ELF header"
        });
    }
    let e_type = if header[5] == 2 {
        u16::from_be_bytes([header[16], header[17]])
    } else {
        u16::from_le_bytes([header[16], header[17]])
    };
    match e_type {
        3 => None, // ET_DYN: a shared object (or a PIE, which dlopen refuses with its own message)
        1 => Some("an object file (ET_REL)"),
        2 => Some("an executable (ET_EXEC)"),
        4 => Some("a core file"),
        _ => Some("an unknown ELF type"),
    }
}

/// A retained `OSObject`, released on drop.
struct Object(NonNull<ffi::HostObject>);

// SAFETY: the runtime's reference counts are atomic and every host ABI
// function may be called from any thread (dextlink_host.h).
unsafe impl Send for Object {}
// SAFETY: as above; shared references only read (class name, registration).
unsafe impl Sync for Object {}

impl Object {
    fn from_raw(raw: *mut ffi::HostObject) -> Option<Object> {
        NonNull::new(raw).map(Object)
    }

    fn as_ptr(&self) -> *mut ffi::HostObject {
        self.0.as_ptr()
    }

    fn class_name(&self) -> String {
        // SAFETY: the object is alive (we hold a reference); the name is the
        // class's static storage, NUL-terminated.
        unsafe { CStr::from_ptr(ffi::dextlink_host_class_name(self.as_ptr())) }
            .to_string_lossy()
            .into_owned()
    }

    fn is_kind_of(&self, class_name: &str) -> bool {
        let Ok(name) = CString::new(class_name) else { return false };
        // SAFETY: a live object and a NUL-terminated name.
        unsafe { ffi::dextlink_host_is_kind_of(self.as_ptr(), name.as_ptr()) != 0 }
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        // SAFETY: we own one reference to the object; this gives it back.
        unsafe { ffi::dextlink_host_release(self.as_ptr()) }
    }
}

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{:p}", self.class_name(), self.0)
    }
}

fn status(code: i32) -> Result<(), IoReturn> {
    if code == 0 { Ok(()) } else { Err(IoReturn(code)) }
}

fn c_string(value: &str) -> Result<CString, IoReturn> {
    CString::new(value).map_err(|_| IoReturn::BAD_ARGUMENT)
}

/// An `OSDictionary` of properties: a personality, or a dictionary inside one.
#[derive(Debug)]
pub struct Dictionary(Object);

impl Dictionary {
    pub fn new() -> Dictionary {
        // SAFETY: no arguments; returns a retained dictionary or NULL.
        let raw = unsafe { ffi::dextlink_host_dictionary_create() };
        Dictionary(Object::from_raw(raw).expect("the runtime could not allocate an OSDictionary"))
    }

    /// A personality: `IOUserClass` = `class`, plus `UserClientProperties`
    /// naming the user client class when given.
    pub fn personality(
        class: &str,
        user_client_class: Option<&str>,
    ) -> Result<Dictionary, IoReturn> {
        let personality = Dictionary::new();
        personality.set_string("IOUserClass", class)?;
        if let Some(client) = user_client_class {
            let properties = Dictionary::new();
            properties.set_string("IOUserClass", client)?;
            personality.set_dictionary("UserClientProperties", &properties)?;
        }
        Ok(personality)
    }

    pub fn set_string(&self, key: &str, value: &str) -> Result<(), IoReturn> {
        let (key, value) = (c_string(key)?, c_string(value)?);
        // SAFETY: a live dictionary and NUL-terminated strings (copied by the runtime).
        status(unsafe {
            ffi::dextlink_host_dictionary_set_string(self.0.as_ptr(), key.as_ptr(), value.as_ptr())
        })
    }

    pub fn set_number(&self, key: &str, value: u64) -> Result<(), IoReturn> {
        let key = c_string(key)?;
        // SAFETY: a live dictionary and a NUL-terminated key.
        status(unsafe {
            ffi::dextlink_host_dictionary_set_number(self.0.as_ptr(), key.as_ptr(), value)
        })
    }

    pub fn set_bool(&self, key: &str, value: bool) -> Result<(), IoReturn> {
        let key = c_string(key)?;
        // SAFETY: a live dictionary and a NUL-terminated key.
        status(unsafe {
            ffi::dextlink_host_dictionary_set_bool(
                self.0.as_ptr(),
                key.as_ptr(),
                c_int::from(value),
            )
        })
    }

    /// Stores `value` (retained by this dictionary).
    pub fn set_dictionary(&self, key: &str, value: &Dictionary) -> Result<(), IoReturn> {
        let key = c_string(key)?;
        // SAFETY: two live dictionaries and a NUL-terminated key.
        status(unsafe {
            ffi::dextlink_host_dictionary_set_object(
                self.0.as_ptr(),
                key.as_ptr(),
                value.0.as_ptr(),
            )
        })
    }
}

impl Dictionary {
    /// Stores `value` (retained by this dictionary).
    pub fn set_array(&self, key: &str, value: &Array) -> Result<(), IoReturn> {
        self.set_object(key, &value.0)
    }

    /// Stores an `OSData` of `bytes`.
    pub fn set_data(&self, key: &str, bytes: &[u8]) -> Result<(), IoReturn> {
        self.set_object(key, &data_object(bytes)?)
    }

    fn set_object(&self, key: &str, value: &Object) -> Result<(), IoReturn> {
        let key = c_string(key)?;
        // SAFETY: a live dictionary, a live value and a NUL-terminated key.
        status(unsafe {
            ffi::dextlink_host_dictionary_set_object(self.0.as_ptr(), key.as_ptr(), value.as_ptr())
        })
    }
}

fn data_object(bytes: &[u8]) -> Result<Object, IoReturn> {
    // SAFETY: `bytes` is valid for its length; the runtime copies it.
    let raw = unsafe { ffi::dextlink_host_data_create(bytes.as_ptr().cast(), bytes.len()) };
    Object::from_raw(raw).ok_or(IoReturn::NO_MEMORY)
}

/// An `OSArray` of property values (an array in a personality).
#[derive(Debug)]
pub struct Array(Object);

impl Array {
    pub fn new() -> Result<Array, IoReturn> {
        // SAFETY: no arguments; returns a retained array or NULL.
        let raw = unsafe { ffi::dextlink_host_array_create() };
        Object::from_raw(raw).map(Array).ok_or(IoReturn::NO_MEMORY)
    }

    pub fn push_string(&self, value: &str) -> Result<(), IoReturn> {
        let value = c_string(value)?;
        // SAFETY: a NUL-terminated string, copied by the runtime.
        let raw = unsafe { ffi::dextlink_host_string_create(value.as_ptr()) };
        self.push(&Object::from_raw(raw).ok_or(IoReturn::NO_MEMORY)?)
    }

    pub fn push_number(&self, value: u64) -> Result<(), IoReturn> {
        // SAFETY: no pointers; returns a retained number or NULL.
        let raw = unsafe { ffi::dextlink_host_number_create(value) };
        self.push(&Object::from_raw(raw).ok_or(IoReturn::NO_MEMORY)?)
    }

    pub fn push_bool(&self, value: bool) -> Result<(), IoReturn> {
        // SAFETY: no pointers; returns a retained boolean.
        let raw = unsafe { ffi::dextlink_host_bool_create(c_int::from(value)) };
        self.push(&Object::from_raw(raw).ok_or(IoReturn::NO_MEMORY)?)
    }

    pub fn push_data(&self, bytes: &[u8]) -> Result<(), IoReturn> {
        self.push(&data_object(bytes)?)
    }

    pub fn push_dictionary(&self, value: &Dictionary) -> Result<(), IoReturn> {
        self.push(&value.0)
    }

    pub fn push_array(&self, value: &Array) -> Result<(), IoReturn> {
        self.push(&value.0)
    }

    fn push(&self, value: &Object) -> Result<(), IoReturn> {
        // SAFETY: a live array and a live value (retained by the array).
        status(unsafe { ffi::dextlink_host_array_append(self.0.as_ptr(), value.as_ptr()) })
    }
}

impl Default for Dictionary {
    fn default() -> Dictionary {
        Dictionary::new()
    }
}

/// Whether a class of that name is registered (the runtime's or a loaded dext's).
pub fn class_exists(name: &str) -> bool {
    let Ok(name) = CString::new(name) else { return false };
    // SAFETY: a NUL-terminated name.
    unsafe { ffi::dextlink_host_class_exists(name.as_ptr()) != 0 }
}

/// A started service: the class a personality's `IOUserClass` names.
#[derive(Debug)]
pub struct Service(Object);

impl Service {
    /// Makes the personality's `IOUserClass` on a provider stub, then init
    /// and Start (see `dextlink_host_service_start` for the errors).
    pub fn start(personality: &Dictionary) -> Result<Service, IoReturn> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: a live dictionary and a valid out pointer.
        status(unsafe { ffi::dextlink_host_service_start(personality.0.as_ptr(), &mut raw) })?;
        Ok(Service(Object::from_raw(raw).ok_or(IoReturn::INTERNAL_ERROR)?))
    }

    pub fn class_name(&self) -> String {
        self.0.class_name()
    }

    pub fn is_kind_of(&self, class_name: &str) -> bool {
        self.0.is_kind_of(class_name)
    }

    /// Whether it called `RegisterService` (findable by clients, docs/driverkit.md §9-3).
    pub fn is_registered(&self) -> bool {
        // SAFETY: a live object.
        unsafe { ffi::dextlink_host_service_is_registered(self.0.as_ptr()) != 0 }
    }

    /// The provider's class name, if it has one.
    pub fn provider_class_name(&self) -> Option<String> {
        // SAFETY: a live object; the provider is not retained for us, and
        // only its (static) class name is read while the service holds it.
        let provider = unsafe { ffi::dextlink_host_provider(self.0.as_ptr()) };
        if provider.is_null() {
            return None;
        }
        // SAFETY: as above.
        Some(
            unsafe { CStr::from_ptr(ffi::dextlink_host_class_name(provider)) }
                .to_string_lossy()
                .into_owned(),
        )
    }

    /// `NewUserClient(type)`: what `IOServiceOpen` makes the dext do.
    pub fn new_user_client(&self, kind: u32) -> Result<UserClient, IoReturn> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: a live service and a valid out pointer.
        status(unsafe { ffi::dextlink_host_new_user_client(self.0.as_ptr(), kind, &mut raw) })?;
        let object = Object::from_raw(raw).ok_or(IoReturn::INTERNAL_ERROR)?;
        // SAFETY: the user client is alive (we hold it); its provider is read as above.
        let provider = unsafe { ffi::dextlink_host_provider(object.as_ptr()) };
        Ok(UserClient {
            object,
            provider_is_service: provider == self.0.as_ptr(),
            references: Mutex::new(Vec::new()),
        })
    }

    /// `Stop(provider)`.
    pub fn stop(&self) -> Result<(), IoReturn> {
        // SAFETY: a live object.
        status(unsafe { ffi::dextlink_host_stop(self.0.as_ptr()) })
    }
}

/// An open user client.
#[derive(Debug)]
pub struct UserClient {
    object: Object,
    provider_is_service: bool,
    references: Mutex<Vec<u64>>,
}

/// One external method call, shaped as a client's `IOConnectCall*Method` is.
#[derive(Debug, Default, Clone)]
pub struct Call<'a> {
    pub selector: u64,
    pub scalar_input: &'a [u64],
    pub structure_input: &'a [u8],
    /// The scalar output count requested (at most 16).
    pub scalar_output_count: u32,
    /// The structure output capacity offered (`0xffffffff`: variable, at
    /// most [`VARIABLE_OUTPUT_BUFFER`] bytes back).
    pub structure_output_capacity: u64,
}

/// What came back from a successful call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub scalar_output: Vec<u64>,
    pub structure_output: Vec<u8>,
}

/// A call with the caller's buffers ([`UserClient::call_with_buffers`]).
#[derive(Debug)]
pub struct BufferedCall<'a> {
    pub selector: u64,
    pub scalar_input: &'a [u64],
    /// Up to 4096 bytes arrive as an OSData, more as a descriptor.
    pub structure_input: &'a [u8],
    pub scalar_output: &'a mut [u64; 16],
    pub scalar_output_count: u32,
    /// Where the output is copied: at least the capacity long, unless the
    /// capacity is `0xffffffff` (variable: as long as the host will take).
    pub structure_output: &'a mut [u8],
    pub structure_output_capacity: u64,
}

/// What a [`BufferedCall`] left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferedReply {
    /// min(requested, what the dext left).
    pub scalar_output_count: u32,
    /// Bytes written to the structure output (with `kIOReturnNoSpace`: the
    /// length the dext's variable output needed).
    pub structure_output_length: u64,
    /// Whether the dext returned an OSData.
    pub structure_output_set: bool,
}

/// What a variable-output call can bring back (the runtime answers
/// kIOReturnNoSpace for more).
pub const VARIABLE_OUTPUT_BUFFER: usize = 64 * 1024;

/// A completion callback: the status and values of each `AsyncCompletion`.
pub type CompletionFn = dyn Fn(IoReturn, &[u64]) + Send + Sync;

/// The memory a user client returned for a type, as a client maps it.
#[derive(Debug)]
pub struct ClientMemory {
    /// A duplicate of the descriptor's memfd, owned by this value.
    pub fd: std::os::fd::OwnedFd,
    pub offset: u64,
    pub length: u64,
    pub read_only: bool,
}

impl UserClient {
    pub fn class_name(&self) -> String {
        self.object.class_name()
    }

    pub fn is_kind_of(&self, class_name: &str) -> bool {
        self.object.is_kind_of(class_name)
    }

    /// Whether its provider is the service whose NewUserClient made it
    /// (docs/driverkit.md §9-1).
    pub fn provider_is_service(&self) -> bool {
        self.provider_is_service
    }

    /// A synchronous call.
    pub fn call(&self, call: &Call<'_>) -> Result<Reply, IoReturn> {
        self.call_inner(call, None)
    }

    /// An async call: `on_completion` runs for every `AsyncCompletion` the
    /// dext sends with this call's action, on the dext's thread, for as long
    /// as this user client lives (a retained action may complete many times,
    /// docs/driverkit.md §9-7).
    pub fn call_async(
        &self,
        call: &Call<'_>,
        on_completion: impl Fn(IoReturn, &[u64]) + Send + Sync + 'static,
    ) -> Result<Reply, IoReturn> {
        let reference = completions().register(Arc::new(on_completion));
        self.references.lock().unwrap_or_else(|e| e.into_inner()).push(reference);
        self.call_inner(call, Some(reference))
    }

    fn call_inner(&self, call: &Call<'_>, reference: Option<u64>) -> Result<Reply, IoReturn> {
        if call.scalar_output_count > 16 || call.scalar_input.len() > 16 {
            return Err(IoReturn::OVERRUN);
        }
        let capacity = if call.structure_output_capacity == 0xffff_ffff {
            // The variable-output call: a longer reply is kIOReturnNoSpace.
            VARIABLE_OUTPUT_BUFFER
        } else {
            usize::try_from(call.structure_output_capacity).map_err(|_| IoReturn::NO_MEMORY)?
        };
        let mut scalar_output = [0u64; 16];
        let mut structure_output = vec![0u8; capacity];
        let mut raw = ffi::HostCall {
            selector: call.selector,
            scalar_input: call.scalar_input.as_ptr(),
            scalar_input_count: call.scalar_input.len() as u32,
            structure_input: call.structure_input.as_ptr().cast(),
            structure_input_length: call.structure_input.len() as u64,
            scalar_output: scalar_output.as_mut_ptr(),
            scalar_output_count: call.scalar_output_count,
            structure_output: structure_output.as_mut_ptr().cast(),
            structure_output_buffer_length: capacity as u64,
            structure_output_capacity: call.structure_output_capacity,
            structure_output_length: 0,
            is_async: c_int::from(reference.is_some()),
            async_reference: reference.unwrap_or(0),
            structure_output_set: 0,
        };
        ensure_completion_sink();
        // SAFETY: every pointer in `raw` points into live buffers of the
        // lengths given beside them, for the duration of the call.
        status(unsafe { ffi::dextlink_host_external_method(self.object.as_ptr(), &mut raw) })?;
        let returned =
            usize::try_from(raw.structure_output_length).unwrap_or(usize::MAX).min(capacity);
        structure_output.truncate(returned);
        Ok(Reply {
            scalar_output: scalar_output[..raw.scalar_output_count.min(16) as usize].to_vec(),
            structure_output,
        })
    }

    /// A call with the caller's own buffers, for a host that already
    /// shaped it as the kernel does (the simulator's `kernel` module):
    /// returns the dext's status with what it left, also on failure (a
    /// variable output too long for the buffer reports the length needed).
    /// `on_completion`, when given, makes the call async; it runs for every
    /// `AsyncCompletion` of its action while this user client lives.
    pub fn call_with_buffers(
        &self,
        call: BufferedCall<'_>,
        on_completion: Option<Arc<CompletionFn>>,
    ) -> (IoReturn, BufferedReply) {
        let reference = on_completion.map(|callback| {
            let reference = completions().register(callback);
            self.references.lock().unwrap_or_else(|e| e.into_inner()).push(reference);
            reference
        });
        let mut raw = ffi::HostCall {
            selector: call.selector,
            scalar_input: call.scalar_input.as_ptr(),
            scalar_input_count: u32::try_from(call.scalar_input.len()).unwrap_or(u32::MAX),
            structure_input: call.structure_input.as_ptr().cast(),
            structure_input_length: call.structure_input.len() as u64,
            scalar_output: call.scalar_output.as_mut_ptr(),
            scalar_output_count: call.scalar_output_count,
            structure_output: call.structure_output.as_mut_ptr().cast(),
            structure_output_buffer_length: call.structure_output.len() as u64,
            structure_output_capacity: call.structure_output_capacity,
            structure_output_length: 0,
            is_async: c_int::from(reference.is_some()),
            async_reference: reference.unwrap_or(0),
            structure_output_set: 0,
        };
        ensure_completion_sink();
        // SAFETY: every pointer in `raw` points into live buffers of the
        // lengths given beside them (the scalar output has the 16 slots the
        // ABI writes at most), for the duration of the call.
        let code = unsafe { ffi::dextlink_host_external_method(self.object.as_ptr(), &mut raw) };
        let reply = BufferedReply {
            scalar_output_count: raw.scalar_output_count.min(16),
            structure_output_length: raw.structure_output_length,
            structure_output_set: raw.structure_output_set != 0,
        };
        (IoReturn(code), reply)
    }

    /// `CopyClientMemoryForType(type)`: what `IOConnectMapMemory64` maps.
    pub fn copy_client_memory(&self, kind: u64) -> Result<ClientMemory, IoReturn> {
        let mut raw = ffi::HostMemory { fd: -1, offset: 0, length: 0, read_only: 0 };
        // SAFETY: a live user client and a valid out struct.
        status(unsafe {
            ffi::dextlink_host_copy_client_memory(self.object.as_ptr(), kind, &mut raw)
        })?;
        // SAFETY: the fd is the descriptor's memfd, open while the user
        // client keeps the descriptor (docs/driverkit.md §9-5); dup makes ours.
        let duplicate = unsafe { libc::fcntl(raw.fd, libc::F_DUPFD_CLOEXEC, 0) };
        if duplicate < 0 {
            return Err(IoReturn::NO_RESOURCES);
        }
        // SAFETY: `duplicate` is a fresh fd nobody else owns.
        let fd =
            unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(duplicate) };
        Ok(ClientMemory {
            fd,
            offset: raw.offset,
            length: raw.length,
            read_only: raw.read_only != 0,
        })
    }

    /// `Stop(provider)` on the user client (what closing the connection does).
    pub fn stop(&self) -> Result<(), IoReturn> {
        // SAFETY: a live object.
        status(unsafe { ffi::dextlink_host_stop(self.object.as_ptr()) })
    }
}

impl Drop for UserClient {
    fn drop(&mut self) {
        let references =
            std::mem::take(&mut *self.references.lock().unwrap_or_else(|e| e.into_inner()));
        completions().forget(&references);
    }
}

/// Completion callbacks by the reference their async call was made with.
struct Completions {
    next: AtomicU64,
    callbacks: Mutex<HashMap<u64, Arc<CompletionFn>>>,
}

impl Completions {
    fn register(&self, callback: Arc<CompletionFn>) -> u64 {
        let reference = self.next.fetch_add(1, Ordering::Relaxed);
        self.callbacks.lock().unwrap_or_else(|e| e.into_inner()).insert(reference, callback);
        reference
    }

    fn forget(&self, references: &[u64]) {
        let mut callbacks = self.callbacks.lock().unwrap_or_else(|e| e.into_inner());
        for reference in references {
            callbacks.remove(reference);
        }
    }
}

fn completions() -> &'static Completions {
    static COMPLETIONS: OnceLock<Completions> = OnceLock::new();
    COMPLETIONS.get_or_init(|| Completions {
        next: AtomicU64::new(1),
        callbacks: Mutex::new(HashMap::new()),
    })
}

unsafe extern "C" fn completion_trampoline(
    _context: *mut c_void,
    reference: u64,
    status: i32,
    values: *const u64,
    count: u32,
) {
    let values = if values.is_null() || count == 0 {
        &[][..]
    } else {
        // SAFETY: the runtime passes `count` (at most 16) values that live
        // for the duration of this call.
        unsafe { std::slice::from_raw_parts(values, count as usize) }
    };
    let callback =
        completions().callbacks.lock().unwrap_or_else(|e| e.into_inner()).get(&reference).cloned();
    if let Some(callback) = callback {
        // A panicking callback must not unwind into C++.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            callback(IoReturn(status), values)
        }));
    }
}

fn ensure_completion_sink() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // SAFETY: the trampoline has the sink's signature and stays valid
        // for the life of the process; it needs no context.
        unsafe {
            ffi::dextlink_host_set_completion_sink(
                Some(completion_trampoline),
                std::ptr::null_mut(),
            )
        }
    });
}

/// The `os_log_type_t` of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogType {
    Default,
    Info,
    Debug,
    Error,
    Fault,
    Other(u8),
}

impl LogType {
    fn from_raw(raw: u8) -> LogType {
        match raw {
            0x00 => LogType::Default,
            0x01 => LogType::Info,
            0x02 => LogType::Debug,
            0x10 => LogType::Error,
            0x11 => LogType::Fault,
            other => LogType::Other(other),
        }
    }
}

/// A log sink: each os_log/IOLog line (and the runtime's own reports).
pub type LogFn = dyn Fn(LogType, &str) + Send + Sync;

fn log_sink() -> &'static Mutex<Option<Arc<LogFn>>> {
    static SINK: OnceLock<Mutex<Option<Arc<LogFn>>>> = OnceLock::new();
    SINK.get_or_init(|| Mutex::new(None))
}

unsafe extern "C" fn log_trampoline(_context: *mut c_void, kind: u8, message: *const c_char) {
    if message.is_null() {
        return;
    }
    // SAFETY: the runtime passes a NUL-terminated line valid for this call.
    let message = unsafe { CStr::from_ptr(message) }.to_string_lossy();
    let sink = log_sink().lock().unwrap_or_else(|e| e.into_inner()).clone();
    match sink {
        Some(sink) => {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                sink(LogType::from_raw(kind), &message)
            }));
        }
        None => eprintln!("{message}"),
    }
}

/// Routes the dext's log lines to `sink` (None: back to stderr).
pub fn set_log_sink(sink: Option<Arc<LogFn>>) {
    let install = sink.is_some();
    *log_sink().lock().unwrap_or_else(|e| e.into_inner()) = sink;
    // SAFETY: the trampoline has the sink's signature and lives for the
    // process; None restores the runtime's stderr output.
    unsafe {
        ffi::dextlink_host_set_log_sink(
            install.then_some(log_trampoline as ffi::LogSink),
            std::ptr::null_mut(),
        )
    }
}

/// The leak report: one line per class with live objects, then IOMalloc
/// blocks not freed; empty when nothing is alive.
pub fn leak_report() -> String {
    // SAFETY: a NULL buffer with size 0 only asks for the length.
    let length = unsafe { ffi::dextlink_host_leak_report(std::ptr::null_mut(), 0) };
    let mut buffer = vec![0u8; length + 1];
    // SAFETY: the buffer has the size passed.
    let written =
        unsafe { ffi::dextlink_host_leak_report(buffer.as_mut_ptr().cast(), buffer.len()) };
    buffer.truncate(written.min(length));
    String::from_utf8_lossy(&buffer).into_owned()
}

/// The dispatch rule check, so that it is linked into every executable the
/// C++ runtime is (the runtime's `ExternalMethod` calls it by name).
#[used]
static KEEP_CHECK_DISPATCH: unsafe extern "C" fn(
    *const crate::rules::DispatchChecksC,
    *const crate::rules::CallShapeC,
) -> i32 = crate::rules::dextlink_driverkit_check_dispatch;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_headers_are_told_apart() {
        let mut so = [0u8; 18];
        so[..4].copy_from_slice(b"\x7fELF");
        so[5] = 1;
        so[16] = 3;
        assert_eq!(not_a_shared_library(&so), None);
        so[16] = 1;
        assert_eq!(not_a_shared_library(&so), Some("an object file (ET_REL)"));
        assert_eq!(not_a_shared_library(b"!<arch>\nxxxxxxxxxx"), Some("a static archive"));
        assert_eq!(not_a_shared_library(b"hello"), Some("no ELF header"));
    }

    #[test]
    fn missing_symbols_are_named() {
        let message = "/tmp/x.so: undefined symbol: _ZN9IOService5StartEPS_PFiP8OSObject5IORPCE";
        let symbols = undefined_symbols(message);
        assert_eq!(symbols.len(), 1);
        assert!(symbols[0].starts_with("_ZN9IOService5Start"), "{symbols:?}");
        assert_eq!(
            undefined_symbols("/tmp/x.so: undefined symbol: IOMallocTyped"),
            vec!["IOMallocTyped"]
        );
        assert!(undefined_symbols("cannot open shared object file").is_empty());
    }
}

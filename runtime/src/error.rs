//! The errors a dextlink client sees.

use crate::IoReturn;

/// Everything that can go wrong talking to a dext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The dext (or DriverKit's checks in front of it) answered with an error.
    #[error("{method} (selector {selector}) failed: {code}")]
    Dext { method: &'static str, selector: u32, code: IoReturn },

    /// An async method's completion reported an error.
    #[error("{method} (selector {selector}) completed with {code}")]
    Completion { method: &'static str, selector: u32, code: IoReturn },

    /// The app and the dext were built from different schemas.
    #[error(
        "schema mismatch: this client was built from fingerprint {client_fingerprint:#018x} \
         (version {client_version}), the dext from {dext_fingerprint:#018x} (version {dext_version}); \
         rebuild both from the same schema"
    )]
    FingerprintMismatch {
        client_fingerprint: u64,
        client_version: u32,
        dext_fingerprint: u64,
        dext_version: u64,
    },

    /// An argument was outside its declared type or range; nothing was sent.
    #[error("{method}: `{parameter}` = {value} is outside {range}")]
    OutOfRange { method: &'static str, parameter: &'static str, value: String, range: String },

    /// The reply did not have the shape the schema declares.
    #[error("{method}: malformed reply: {detail}")]
    MalformedReply { method: &'static str, detail: String },

    /// The connection to the dext is gone (the dext stopped, or the simulator
    /// process died); pending completions end with this too.
    #[error("disconnected from the dext")]
    Disconnected,

    /// A wait for a completion ran out of time. The call may still complete;
    /// this is distinct from `Cancelled`.
    #[error("timed out waiting for {method} to complete")]
    Timeout { method: &'static str },

    /// The operation was cancelled by this side.
    #[error("{what} was cancelled")]
    Cancelled { what: &'static str },

    /// The dext's user-client service was not found.
    #[error("no service named {service:?} was found{hint}")]
    NotFound { service: String, hint: String },

    /// Opening the user client was refused (on macOS, usually a missing
    /// `com.apple.developer.driverkit.userclient-access` entitlement).
    #[error("opening {service:?} was refused ({code}): {hint}")]
    NotPermitted { service: String, code: IoReturn, hint: String },

    /// A memory type could not be mapped, or a view was out of bounds.
    #[error("memory type {memory_type}: {detail}")]
    Memory { memory_type: u32, detail: String },

    /// The transport failed for a reason of its own.
    #[error("transport error: {0}")]
    Transport(String),
}

impl Error {
    /// The IOReturn behind a dext or completion error.
    pub fn io_return(&self) -> Option<IoReturn> {
        match self {
            Error::Dext { code, .. } | Error::Completion { code, .. } => Some(*code),
            Error::NotPermitted { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A value that is not one of an enum's declared variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{value} is not a valid {type_name}")]
pub struct UnknownVariant {
    pub type_name: &'static str,
    pub value: i128,
}

//! A client call as owned data, for running it on the dext's thread or in
//! the dext's process.
//!
//! The copies are the ones the kernel makes (copyin of the inputs, copyout
//! of the reply, docs/driverkit.md §3.2). The client's structure output buffer
//! travels both ways: the dext may read what it holds (an out-of-line
//! output is a mapping of the client's buffer) and the buffer comes back
//! exactly as [`kernel::deliver`] leaves it — written on success, untouched
//! inline on failure, partly written through a descriptor on failure.

use super::{UserClient, kernel};
use crate::server::AsyncCompletion;
use crate::{Call, CallError, IoReturn, Reply, StructOutput};

/// The structure output a call offers, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutputRequest {
    None,
    /// The client's buffer as it is before the call.
    Buffer(Vec<u8>),
    Variable,
}

/// One call, owned: what crosses to the dext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallRequest {
    pub selector: u32,
    pub scalar_input: Vec<u64>,
    pub struct_input: Vec<u8>,
    pub scalar_output_count: u32,
    pub output: OutputRequest,
}

/// The dext's answer, owned: what crosses back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallResponse {
    pub status: IoReturn,
    /// The scalars returned (already cut to min(requested, set by the dext)).
    pub scalar_output: Vec<u64>,
    pub struct_output_size: u64,
    /// The client's buffer after the call, or the variable output.
    pub output: Vec<u8>,
}

impl CallRequest {
    /// Copies what a call sends.
    pub(crate) fn from_call(call: &Call<'_>) -> CallRequest {
        CallRequest {
            selector: call.selector,
            scalar_input: call.scalar_input.to_vec(),
            struct_input: call.struct_input.to_vec(),
            scalar_output_count: u32::try_from(call.scalar_output.len()).unwrap_or(u32::MAX),
            output: match &call.struct_output {
                StructOutput::None => OutputRequest::None,
                StructOutput::Buffer(buffer) => OutputRequest::Buffer(buffer.to_vec()),
                StructOutput::Variable(_) => OutputRequest::Variable,
            },
        }
    }
}

impl CallResponse {
    /// Copies the answer into the client's call.
    pub(crate) fn apply(self, call: Call<'_>) -> Result<Reply, CallError> {
        let returned = self.scalar_output.len().min(call.scalar_output.len());
        match call.struct_output {
            StructOutput::None => {}
            StructOutput::Buffer(buffer) => {
                if self.output.len() != buffer.len() {
                    return Err(protocol_error("structure output of the wrong length"));
                }
                buffer.copy_from_slice(&self.output);
            }
            StructOutput::Variable(out) => *out = self.output,
        }
        if !self.status.is_success() {
            return Err(CallError::Status(self.status));
        }
        call.scalar_output[..returned].copy_from_slice(&self.scalar_output[..returned]);
        Ok(Reply {
            scalar_output_count: returned,
            struct_output_size: usize::try_from(self.struct_output_size)
                .map_err(|_| protocol_error("structure output size out of range"))?,
        })
    }
}

fn protocol_error(what: &str) -> CallError {
    CallError::Transport(crate::Error::Transport(format!("simulator protocol: {what}")))
}

/// Runs `request` on `user_client` as DriverKit would deliver it.
pub(crate) fn execute(
    user_client: &mut dyn UserClient,
    request: CallRequest,
    completion: Option<AsyncCompletion>,
) -> CallResponse {
    let CallRequest { selector, scalar_input, struct_input, scalar_output_count, output } = request;
    // More than the wire allows is refused by `deliver`; size the buffer so
    // that it sees the count the client asked for.
    let mut scalar_output = vec![0u64; (scalar_output_count as usize).min(kernel::SCALAR_MAX + 1)];
    let (mut buffer, mut variable) = (Vec::new(), Vec::new());
    let struct_output = match output {
        OutputRequest::None => StructOutput::None,
        OutputRequest::Buffer(bytes) => {
            buffer = bytes;
            StructOutput::Buffer(&mut buffer)
        }
        OutputRequest::Variable => StructOutput::Variable(&mut variable),
    };
    let call = Call {
        selector,
        scalar_input: &scalar_input,
        struct_input: &struct_input,
        scalar_output: &mut scalar_output,
        struct_output,
        completion: None,
    };
    let is_variable = matches!(call.struct_output, StructOutput::Variable(_));
    let result = kernel::deliver(call, completion, |selector, arguments| {
        user_client.external_method(selector, arguments)
    });
    let output = if is_variable { variable } else { buffer };
    match result {
        Ok(reply) => {
            scalar_output.truncate(reply.scalar_output_count);
            CallResponse {
                status: IoReturn::SUCCESS,
                scalar_output,
                struct_output_size: reply.struct_output_size as u64,
                output,
            }
        }
        Err(error) => CallResponse {
            status: match error {
                CallError::Status(code) => code,
                // `deliver` itself only fails with a status.
                CallError::Transport(_) => IoReturn::INTERNAL_ERROR,
            },
            scalar_output: Vec::new(),
            struct_output_size: 0,
            output,
        },
    }
}

//! The layers between an app and a dext, as driverkit-facts §3 and §4
//! describe them: how a client call becomes the dext's arguments, and how
//! the dext's answer becomes the client's reply.

use crate::completion::MAX_COMPLETION_VALUES;
use crate::server::{Arguments, AsyncCompletion, StructureInput, VARIABLE};
use crate::{Call, CallError, IoReturn, Reply, StructOutput};

/// `io_struct_inband_t` (driverkit-facts §1 limit 1).
pub const INBAND_MAX: usize = 4096;

/// Scalars on the wire, in and out (§1 limit 2).
pub const SCALAR_MAX: usize = 16;

/// Delivers one client call to `dext` as DriverKit would, with `completion`
/// as the action an async call gets.
///
/// Input: up to 4096 bytes inline, above that a (read-only) descriptor;
/// 0 bytes, neither (§3.2-5). Output: a capacity of at most 4096 bytes is
/// offered inline, more as a writable descriptor over the client's buffer,
/// the var-output call as `0xffffffff` (§3.2-5). Scalar outputs start zeroed
/// (§3.2-4); the count returned is min(requested, set by the dext) (§3.2-5).
/// After a failure the client's outputs are zero and its counts unchanged.
pub fn deliver(
    call: Call<'_>,
    completion: Option<AsyncCompletion>,
    dext: impl FnOnce(u64, &mut Arguments<'_>) -> IoReturn,
) -> Result<Reply, CallError> {
    // What IOKitLib and MIG refuse before the kernel sees the call.
    if call.scalar_input.len() > SCALAR_MAX || call.scalar_output.len() > SCALAR_MAX {
        return Err(CallError::Status(IoReturn::OVERRUN));
    }
    if let StructOutput::Buffer(buffer) = &call.struct_output
        && buffer.len() > u32::MAX as usize
    {
        return Err(CallError::Status(IoReturn::IPC_ERROR));
    }
    let requested = call.scalar_output.len();
    let mut scalars = [0u64; SCALAR_MAX];
    let structure_input = match call.struct_input.len() {
        0 => StructureInput::None,
        n if n <= INBAND_MAX => StructureInput::Inline(call.struct_input),
        _ => StructureInput::Descriptor(call.struct_input),
    };
    let (maximum, mut descriptor, inline_capacity, variable) = match call.struct_output {
        StructOutput::None => (0u64, None, 0usize, None),
        StructOutput::Buffer(buffer) if buffer.len() <= INBAND_MAX => {
            (buffer.len() as u64, None, buffer.len(), Some(buffer))
        }
        StructOutput::Buffer(buffer) => (buffer.len() as u64, Some(buffer), 0, None),
        StructOutput::Variable(out) => {
            return deliver_variable(
                call.selector,
                call.scalar_input,
                structure_input,
                call.scalar_output,
                out,
                completion,
                dext,
            );
        }
    };
    // `variable` here holds the inline buffer; named for symmetry below.
    let inline_buffer = variable;
    let mut args = Arguments {
        completion,
        scalar_input: call.scalar_input,
        structure_input,
        scalar_output: &mut scalars,
        scalar_output_count: requested as u32,
        structure_output: None,
        structure_output_descriptor: descriptor.as_deref_mut(),
        structure_output_maximum_size: maximum,
    };
    let status = dext(u64::from(call.selector), &mut args);
    let returned_count = (args.scalar_output_count as usize).min(requested);
    let osdata = args.structure_output.take();
    let had_descriptor = args.structure_output_descriptor.is_some();
    drop(args);
    if !status.is_success() {
        if let Some(d) = descriptor {
            d.fill(0);
        }
        return Err(CallError::Status(status));
    }
    // Structure output return rules (§3.3).
    let struct_output_size = if had_descriptor {
        // The dext wrote through the descriptor; an OSData is an error
        // (copied against an inband size of 0, §3.3-2); the size reported
        // is always the full capacity.
        if osdata.as_ref().is_some_and(|d| !d.is_empty()) {
            return Err(CallError::Status(IoReturn::BAD_ARGUMENT));
        }
        maximum as usize
    } else {
        match osdata {
            Some(data) if data.len() > inline_capacity => {
                return Err(CallError::Status(IoReturn::BAD_ARGUMENT));
            }
            Some(data) => {
                if let Some(buffer) = inline_buffer {
                    buffer[..data.len()].copy_from_slice(&data);
                }
                data.len()
            }
            // No OSData: the capacity comes back unchanged (§3.3-1).
            None => inline_capacity,
        }
    };
    call.scalar_output[..returned_count].copy_from_slice(&scalars[..returned_count]);
    Ok(Reply { scalar_output_count: returned_count, struct_output_size })
}

/// The var-output call (`kIOConnectMethodVarOutputSize`, §3.1-2, §3.3-3).
fn deliver_variable(
    selector: u32,
    scalar_input: &[u64],
    structure_input: StructureInput<'_>,
    scalar_output: &mut [u64],
    out: &mut Vec<u8>,
    completion: Option<AsyncCompletion>,
    dext: impl FnOnce(u64, &mut Arguments<'_>) -> IoReturn,
) -> Result<Reply, CallError> {
    let requested = scalar_output.len();
    let mut scalars = [0u64; SCALAR_MAX];
    let mut args = Arguments {
        completion,
        scalar_input,
        structure_input,
        scalar_output: &mut scalars,
        scalar_output_count: requested as u32,
        structure_output: None,
        structure_output_descriptor: None,
        structure_output_maximum_size: u64::from(VARIABLE),
    };
    let status = dext(u64::from(selector), &mut args);
    let returned_count = (args.scalar_output_count as usize).min(requested);
    let data = args.structure_output.take();
    if !status.is_success() {
        out.clear();
        return Err(CallError::Status(status));
    }
    // The kernel copies the dext's OSData out whole; none is an underrun (§3.3-3).
    let Some(data) = data else {
        return Err(CallError::Status(IoReturn::UNDERRUN));
    };
    *out = data;
    scalar_output[..returned_count].copy_from_slice(&scalars[..returned_count]);
    Ok(Reply { scalar_output_count: returned_count, struct_output_size: out.len() })
}

/// Whether a completion may reach the client (§4.1-3: more than 16 values
/// are dropped by the dext-side stub).
pub fn deliverable(values: &[u64]) -> bool {
    values.len() <= MAX_COMPLETION_VALUES
}

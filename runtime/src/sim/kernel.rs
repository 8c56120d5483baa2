//! The layers between an app and a dext, as docs/driverkit.md §3 and §4
//! describe them: how a client call becomes the dext's arguments, and how
//! the dext's answer becomes the client's reply.

use crate::completion::MAX_COMPLETION_VALUES;
use crate::server::{Arguments, AsyncCompletion, StructureInput, VARIABLE};
use crate::{Call, CallError, IoReturn, Reply, StructOutput};

/// `io_struct_inband_t` (docs/driverkit.md §1 limit 1).
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
/// After a failure nothing is copied back (the reply is not, §3.2-5): the
/// client's scalars, inline buffer and counts are as they were. Bytes a dext
/// wrote through an output descriptor before failing stay, as on a Mac: that
/// memory is the client's own.
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
    // The output buffer goes inline (capacity ≤ 4096) or as a descriptor.
    let (maximum, descriptor, mut inline) = match call.struct_output {
        StructOutput::None => (0u64, None, None),
        StructOutput::Buffer(buffer) if buffer.len() <= INBAND_MAX => {
            (buffer.len() as u64, None, Some(buffer))
        }
        StructOutput::Buffer(buffer) => (buffer.len() as u64, Some(buffer), None),
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
    let inline_capacity = inline.as_ref().map_or(0, |b| b.len());
    let mut args = Arguments {
        completion,
        scalar_input: call.scalar_input,
        structure_input,
        scalar_output: &mut scalars,
        scalar_output_count: requested as u32,
        structure_output: None,
        structure_output_descriptor: descriptor,
        structure_output_maximum_size: maximum,
    };
    let status = dext(u64::from(call.selector), &mut args);
    let returned_count = (args.scalar_output_count as usize).min(requested);
    let osdata = args.structure_output.take();
    let had_descriptor = args.structure_output_descriptor.is_some();
    drop(args);
    if !status.is_success() {
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
                if let Some(buffer) = &mut inline {
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

#[cfg(test)]
mod tests {
    //! The rows of docs/driverkit.md §3.4, one by one.

    use super::*;

    fn call<'a>(input: &'a [u8], scalars_out: &'a mut [u64], out: StructOutput<'a>) -> Call<'a> {
        Call {
            selector: 7,
            scalar_input: &[],
            struct_input: input,
            scalar_output: scalars_out,
            struct_output: out,
            completion: None,
        }
    }

    #[test]
    fn structure_input_is_inline_up_to_4096_bytes_then_a_descriptor() {
        for (len, expect) in [(0, "none"), (1, "inline"), (4096, "inline"), (4097, "descriptor")] {
            let input = vec![0xab; len];
            let mut seen = "";
            deliver(call(&input, &mut [], StructOutput::None), None, |_, args| {
                seen = match args.structure_input {
                    StructureInput::None => "none",
                    StructureInput::Inline(b) => {
                        assert_eq!(b.len(), len);
                        "inline"
                    }
                    StructureInput::Descriptor(b) => {
                        assert_eq!(b.len(), len);
                        "descriptor"
                    }
                };
                IoReturn::SUCCESS
            })
            .unwrap();
            assert_eq!(seen, expect, "{len} bytes");
        }
    }

    #[test]
    fn inline_output_returns_the_osdata_length_or_the_capacity() {
        let mut buffer = [0u8; 64];
        let reply =
            deliver(call(&[], &mut [], StructOutput::Buffer(&mut buffer)), None, |_, args| {
                assert_eq!(args.structure_output_maximum_size, 64);
                assert!(args.structure_output_descriptor.is_none());
                args.structure_output = Some(vec![1, 2, 3]);
                IoReturn::SUCCESS
            })
            .unwrap();
        assert_eq!(reply.struct_output_size, 3);
        assert_eq!(&buffer[..4], &[1, 2, 3, 0]);
        // No OSData: the capacity comes back unchanged (§3.3-1).
        let reply = deliver(call(&[], &mut [], StructOutput::Buffer(&mut buffer)), None, |_, _| {
            IoReturn::SUCCESS
        })
        .unwrap();
        assert_eq!(reply.struct_output_size, 64);
        // Longer than the capacity: kIOReturnBadArgument.
        let err =
            deliver(call(&[], &mut [], StructOutput::Buffer(&mut buffer)), None, |_, args| {
                args.structure_output = Some(vec![0; 65]);
                IoReturn::SUCCESS
            });
        assert_eq!(err, Err(CallError::Status(IoReturn::BAD_ARGUMENT)));
    }

    #[test]
    fn large_output_goes_through_a_descriptor_and_reports_the_full_capacity() {
        let mut buffer = vec![0u8; 5000];
        let reply =
            deliver(call(&[], &mut [], StructOutput::Buffer(&mut buffer)), None, |_, args| {
                assert_eq!(args.structure_output_maximum_size, 5000);
                args.structure_output_descriptor.as_deref_mut().unwrap()[..2]
                    .copy_from_slice(&[9, 9]);
                IoReturn::SUCCESS
            })
            .unwrap();
        assert_eq!(reply.struct_output_size, 5000);
        assert_eq!(&buffer[..3], &[9, 9, 0]);
        let err =
            deliver(call(&[], &mut [], StructOutput::Buffer(&mut buffer)), None, |_, args| {
                args.structure_output = Some(vec![1]);
                IoReturn::SUCCESS
            });
        assert_eq!(
            err,
            Err(CallError::Status(IoReturn::BAD_ARGUMENT)),
            "an OSData with a descriptor is an error (§3.3-2)"
        );
    }

    #[test]
    fn variable_output_returns_the_osdata_whole_or_underruns() {
        let mut out = Vec::new();
        let reply =
            deliver(call(&[], &mut [], StructOutput::Variable(&mut out)), None, |_, args| {
                assert_eq!(args.structure_output_maximum_size, u64::from(VARIABLE));
                args.structure_output = Some(vec![5; 10_000]);
                IoReturn::SUCCESS
            })
            .unwrap();
        assert_eq!((reply.struct_output_size, out.len()), (10_000, 10_000));
        let err = deliver(call(&[], &mut [], StructOutput::Variable(&mut out)), None, |_, _| {
            IoReturn::SUCCESS
        });
        assert_eq!(err, Err(CallError::Status(IoReturn::UNDERRUN)));
    }

    #[test]
    fn scalar_outputs_start_zeroed_and_come_back_as_min_of_requested_and_set() {
        let mut out = [7u64; 4];
        let reply = deliver(call(&[], &mut out, StructOutput::None), None, |_, args| {
            assert!(args.scalar_output.iter().all(|v| *v == 0), "zeroed first (§3.2-4)");
            assert_eq!(args.scalar_output_count, 4);
            args.scalar_output[..3].copy_from_slice(&[1, 2, 3]);
            args.scalar_output_count = 3;
            IoReturn::SUCCESS
        })
        .unwrap();
        assert_eq!(reply.scalar_output_count, 3);
        assert_eq!(out, [1, 2, 3, 7]);
        // The dext cannot lengthen the count.
        let reply = deliver(call(&[], &mut out, StructOutput::None), None, |_, args| {
            args.scalar_output_count = 16;
            IoReturn::SUCCESS
        })
        .unwrap();
        assert_eq!(reply.scalar_output_count, 4);
    }

    #[test]
    fn failures_return_nothing_and_too_many_scalars_never_reach_the_dext() {
        let mut out = [7u64; 2];
        let err = deliver(call(&[], &mut out, StructOutput::None), None, |_, args| {
            args.scalar_output[0] = 1;
            IoReturn::BUSY
        });
        assert_eq!(err, Err(CallError::Status(IoReturn::BUSY)));
        assert_eq!(out, [7, 7], "no outputs are copied on failure");
        let mut reached = false;
        let many = [0u64; 17];
        let err = deliver(
            Call {
                selector: 0,
                scalar_input: &many,
                struct_input: &[],
                scalar_output: &mut [],
                struct_output: StructOutput::None,
                completion: None,
            },
            None,
            |_, _| {
                reached = true;
                IoReturn::SUCCESS
            },
        );
        assert_eq!(err, Err(CallError::Status(IoReturn::OVERRUN)));
        assert!(!reached);
    }
}

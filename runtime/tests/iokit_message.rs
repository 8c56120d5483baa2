//! The IOKit backend's completion-message parser, on every platform: the
//! backend itself only builds for Apple targets, its parser has no
//! dependencies and is compiled here as it is.

#[allow(dead_code)]
#[path = "../src/iokit/message.rs"]
mod message;

use message::{AsyncCompletion, parse_async_completion};

const SENTINEL: u64 = 0x6478_6c6b_0000_0001;

/// The message `IOUserClient::_sendAsyncResult64` builds (docs/driverkit.md
/// §4.2-4, §4.2-5): `msgh_size = 24 + 208 - (16 - n) * 8`, which includes 4
/// bytes of tail padding; `reference[0]` is sent as 0.
fn kernel_message(reference: [u64; 8], result: i32, args: &[u64]) -> Vec<u8> {
    assert!(args.len() <= 16);
    let msgh_size = 24 + 208 - (16 - args.len()) * 8;
    let mut m = vec![0u8; msgh_size];
    m[4..8].copy_from_slice(&(msgh_size as u32).to_ne_bytes());
    m[12..16].copy_from_slice(&0x1103u32.to_ne_bytes()); // msgh_local_port: the wake port
    m[20..24].copy_from_slice(&53i32.to_ne_bytes()); // kOSNotificationMessageID
    let notify_size = 4 + 8 * args.len() as u32; // sizeof(IOAsyncCompletionContent) + numArgs*8
    m[24..28].copy_from_slice(&notify_size.to_ne_bytes());
    m[28..32].copy_from_slice(&150u32.to_ne_bytes()); // kIOAsyncCompletionNotificationType
    for (i, r) in reference.iter().enumerate().skip(1) {
        m[32 + 8 * i..40 + 8 * i].copy_from_slice(&r.to_ne_bytes());
    }
    m[96..100].copy_from_slice(&result.to_ne_bytes());
    for (i, a) in args.iter().enumerate() {
        m[100 + 8 * i..108 + 8 * i].copy_from_slice(&a.to_ne_bytes());
    }
    m
}

fn refs(id: u64) -> [u64; 8] {
    [0xdead, SENTINEL, id, 3, 4, 5, 6, 7]
}

#[test]
fn every_argument_count_from_0_to_16_round_trips() {
    for n in 0..=16usize {
        let args: Vec<u64> = (0..n as u64).map(|i| 0x1111_0000_0000_0000 | i).collect();
        let mut bytes = kernel_message(refs(42), -536870206, &args);
        // The receive buffer holds a trailer after the message.
        bytes.extend_from_slice(&[0xAA; 8]);
        let c: AsyncCompletion = parse_async_completion(&bytes).expect("a completion");
        assert_eq!(c.args(), &args[..], "{n} args");
        assert_eq!(c.result, -536870206);
        assert_eq!(c.reference, [0, SENTINEL, 42, 3, 4, 5, 6, 7], "reference[0] is sent as 0");
    }
}

#[test]
fn other_messages_are_not_completions() {
    let good = kernel_message(refs(1), 0, &[7]);
    assert!(parse_async_completion(&good).is_some());

    let mut wrong_id = good.clone();
    wrong_id[20..24].copy_from_slice(&57i32.to_ne_bytes());
    assert_eq!(parse_async_completion(&wrong_id), None);

    let mut matching = good.clone();
    matching[28..32].copy_from_slice(&101u32.to_ne_bytes()); // kIOServiceMatchedNotificationType
    assert_eq!(parse_async_completion(&matching), None);

    let mut complex = good.clone();
    complex[0..4].copy_from_slice(&0x8000_0000u32.to_ne_bytes());
    assert_eq!(parse_async_completion(&complex), None);

    // The wake-up message the backend sends itself: a bare header.
    let mut wake = vec![0u8; 24];
    wake[4..8].copy_from_slice(&24u32.to_ne_bytes());
    wake[20..24].copy_from_slice(&0x6478_6c6bi32.to_ne_bytes());
    assert_eq!(parse_async_completion(&wake), None);
}

#[test]
fn truncated_or_inconsistent_sizes_are_rejected() {
    let good = kernel_message(refs(1), 0, &[1, 2, 3]);
    // Fewer bytes than msgh_size declares.
    assert_eq!(parse_async_completion(&good[..good.len() - 1]), None);
    // msgh_size too small for the result field.
    let mut short = good.clone();
    short[4..8].copy_from_slice(&99u32.to_ne_bytes());
    assert_eq!(parse_async_completion(&short), None);
    // More than kMaxAsyncArgs.
    let mut long = kernel_message(refs(1), 0, &[0; 16]);
    long.extend_from_slice(&[0; 8]);
    let size = long.len() as u32;
    long[4..8].copy_from_slice(&size.to_ne_bytes());
    assert_eq!(parse_async_completion(&long), None);
    // Empty and tiny buffers.
    assert_eq!(parse_async_completion(&[]), None);
    assert_eq!(parse_async_completion(&good[..23]), None);
}

#[test]
fn the_size_adjustment_bits_are_subtracted_as_iokitlib_does() {
    // Two args, but the sender marks 3 bytes of padding in type's top bits:
    // (msgh_size - 96 - 3 - 4) / 8 = (120 - 103) / 8 = 2.
    let mut m = kernel_message(refs(9), 0, &[5, 6]);
    m[28..32].copy_from_slice(&(150u32 | (3 << 30)).to_ne_bytes());
    assert_eq!(parse_async_completion(&m).unwrap().args(), &[5, 6]);
    // With 1 arg and 4 + 8 bytes: (112 - 96 - 3 - 4) / 8 = 1.
    let mut m = kernel_message(refs(9), 0, &[5]);
    m[28..32].copy_from_slice(&(150u32 | (3 << 30)).to_ne_bytes());
    assert_eq!(parse_async_completion(&m).unwrap().args(), &[5]);
}

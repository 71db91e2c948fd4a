//! Fuzzes the decoder: arbitrary bytes, fed in arbitrary chunks, must yield frames or typed
//! errors, never a panic, and every decoded frame must re-encode to the bytes it came from.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tern_proto::{Decoded, FrameDecoder, Request, ServerEvent};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let decoder = FrameDecoder::new(64 * 1024);
    let mut buf = BytesMut::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.clone();
            match decoder.decode(&mut buf) {
                Ok(Decoded::Frame(frame)) => {
                    let consumed = before.len() - buf.len();
                    assert_eq!(&frame.to_bytes()[..], &before[..consumed]);
                    let _ = Request::decode(&frame);
                    let _ = ServerEvent::decode(&frame);
                    let _ = decoder.decode_exact(frame.to_bytes());
                }
                Ok(Decoded::Incomplete { needed }) => {
                    assert!(needed > 0);
                    break;
                }
                Err(_) => return,
            }
        }
    }
});

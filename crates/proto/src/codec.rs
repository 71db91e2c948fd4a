//! The incremental frame decoder: consumes whole frames from a growing buffer.

use bytes::{Buf, BytesMut};

use crate::frame::{Flags, Frame, HEADER_LEN, PacketId};

/// What [`FrameDecoder::decode`] found at the front of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole frame, removed from the buffer.
    Frame(Frame),
    /// The buffer holds part of a frame: at least `needed` more bytes must arrive.
    Incomplete {
        /// The minimum number of additional bytes before another call can make progress.
        needed: usize,
    },
}

/// A framing error: the byte stream cannot be trusted past this point, so the connection must
/// be closed (after answering, where the header was readable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length field is smaller than the header, so no frame boundary can be found.
    #[error("frame length {len} is shorter than the {HEADER_LEN}-byte header")]
    TooShort {
        /// The length field as received.
        len: u32,
    },
    /// A message-framed transport (WebSocket) carried bytes whose length field disagrees with
    /// the message length: each message must hold exactly one whole frame.
    #[error("message of {actual} bytes holds a frame whose length field says {len}")]
    LengthMismatch {
        /// The length field as received.
        len: u32,
        /// The message's length.
        actual: usize,
    },
    /// The length field exceeds the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The length field as received.
        len: u32,
        /// The decoder's limit.
        max: usize,
        /// The frame's type, so the error response can echo it.
        kind: u16,
        /// The frame's packet id, so the error response can echo it.
        packet_id: PacketId,
        /// The frame's flags, so the error response can use the frame's encoding.
        flags: Flags,
    },
}

impl FrameError {
    /// The error for a frame whose header says it is longer than `max`.
    pub fn too_large(header: &Header, max: usize) -> FrameError {
        FrameError::TooLarge {
            len: header.len,
            max,
            kind: header.kind,
            packet_id: header.packet_id,
            flags: header.flags,
        }
    }
}

/// A frame's 28-byte header, read without the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The length field: the whole frame, header included.
    pub len: u32,
    /// The frame's type.
    pub kind: u16,
    /// The protocol version the sender used.
    pub version: u16,
    /// The flag bits.
    pub flags: Flags,
    /// The packet id.
    pub packet_id: PacketId,
}

impl Header {
    /// Reads the header at the front of `bytes`; `None` if fewer than [`HEADER_LEN`] bytes.
    pub fn parse(bytes: &[u8]) -> Option<Header> {
        let b = bytes.get(..HEADER_LEN)?;
        Some(Header {
            len: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            kind: u16::from_be_bytes([b[4], b[5]]),
            version: u16::from_be_bytes([b[6], b[7]]),
            flags: Flags::from_bits_retain(u32::from_be_bytes([b[8], b[9], b[10], b[11]])),
            packet_id: read_packet_id(&b[12..28]),
        })
    }
}

/// Splits a byte stream into frames, enforcing a maximum frame length.
///
/// The decoder holds no buffer of its own: the caller owns the bytes, so an idle connection
/// can drop its buffer entirely.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_frame_len: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(crate::DEFAULT_MAX_FRAME_LEN)
    }
}

impl FrameDecoder {
    /// A decoder that rejects frames longer than `max_frame_len` bytes (header included).
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            max_frame_len: max_frame_len.max(HEADER_LEN),
        }
    }

    /// The largest frame this decoder accepts.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Changes the largest frame accepted (a connection accepts less before it logs in).
    pub fn set_max_frame_len(&mut self, max_frame_len: usize) {
        self.max_frame_len = max_frame_len.max(HEADER_LEN);
    }

    /// Removes one frame from the front of `buf` if it is complete.
    ///
    /// On `Incomplete` nothing is consumed. On error nothing is consumed either; the stream is
    /// unusable from here on.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Decoded, FrameError> {
        if buf.len() < 4 {
            return Ok(Decoded::Incomplete {
                needed: 4 - buf.len(),
            });
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let len_usize = len as usize;
        if len_usize < HEADER_LEN {
            return Err(FrameError::TooShort { len });
        }
        if len_usize > self.max_frame_len {
            // Wait for the rest of the header so that the error can name the request it answers.
            let Some(header) = Header::parse(buf) else {
                return Ok(Decoded::Incomplete {
                    needed: HEADER_LEN - buf.len(),
                });
            };
            return Err(FrameError::too_large(&header, self.max_frame_len));
        }
        if buf.len() < len_usize {
            return Ok(Decoded::Incomplete {
                needed: len_usize - buf.len(),
            });
        }
        let mut frame = buf.split_to(len_usize);
        frame.advance(4);
        let kind = frame.get_u16();
        let version = frame.get_u16();
        let flags = Flags::from_bits_retain(frame.get_u32());
        let packet_id = read_packet_id(&frame[..16]);
        frame.advance(16);
        Ok(Decoded::Frame(Frame {
            kind,
            version,
            flags,
            packet_id,
            payload: frame.freeze(),
        }))
    }
}

impl FrameDecoder {
    /// Decodes a message that must hold exactly one frame (one WebSocket message), without
    /// copying the payload.
    pub fn decode_exact(&self, message: bytes::Bytes) -> Result<Frame, FrameError> {
        if message.len() < 4 {
            return Err(FrameError::TooShort {
                len: message.len() as u32,
            });
        }
        let len = u32::from_be_bytes([message[0], message[1], message[2], message[3]]);
        if (len as usize) < HEADER_LEN {
            return Err(FrameError::TooShort { len });
        }
        if len as usize > self.max_frame_len
            && let Some(header) = Header::parse(&message)
        {
            return Err(FrameError::too_large(&header, self.max_frame_len));
        }
        if len as usize != message.len() {
            return Err(FrameError::LengthMismatch {
                len,
                actual: message.len(),
            });
        }
        Ok(Frame {
            kind: u16::from_be_bytes([message[4], message[5]]),
            version: u16::from_be_bytes([message[6], message[7]]),
            flags: Flags::from_bits_retain(u32::from_be_bytes([
                message[8],
                message[9],
                message[10],
                message[11],
            ])),
            packet_id: read_packet_id(&message[12..28]),
            payload: message.slice(HEADER_LEN..),
        })
    }
}

fn read_packet_id(bytes: &[u8]) -> PacketId {
    let mut id = [0u8; 16];
    id.copy_from_slice(&bytes[..16]);
    PacketId(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn sample() -> Frame {
        Frame {
            kind: 0x0101,
            version: 1,
            flags: Flags::JSON,
            packet_id: PacketId::from_u128(7),
            payload: Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn every_split_point_yields_the_same_frame() {
        let bytes = sample().to_bytes();
        let decoder = FrameDecoder::default();
        for split in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..split]);
            match decoder.decode(&mut buf).unwrap() {
                Decoded::Incomplete { needed } => {
                    assert!(needed >= 1 && split + needed <= bytes.len())
                }
                Decoded::Frame(f) => panic!("decoded {f:?} from {split} bytes"),
            }
            buf.extend_from_slice(&bytes[split..]);
            assert_eq!(decoder.decode(&mut buf).unwrap(), Decoded::Frame(sample()));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn back_to_back_frames_decode_in_order() {
        let mut buf = BytesMut::new();
        let mut second = sample();
        second.packet_id = PacketId::from_u128(8);
        sample().encode(&mut buf);
        second.encode(&mut buf);
        let decoder = FrameDecoder::default();
        assert_eq!(decoder.decode(&mut buf).unwrap(), Decoded::Frame(sample()));
        assert_eq!(decoder.decode(&mut buf).unwrap(), Decoded::Frame(second));
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Decoded::Incomplete { needed: 4 }
        );
    }

    #[test]
    fn a_message_must_hold_exactly_one_frame() {
        let decoder = FrameDecoder::default();
        let bytes = sample().to_bytes();
        assert_eq!(decoder.decode_exact(bytes.clone()), Ok(sample()));
        let mut two = BytesMut::from(&bytes[..]);
        two.extend_from_slice(&bytes);
        assert!(matches!(
            decoder.decode_exact(two.freeze()),
            Err(FrameError::LengthMismatch {
                len: 30,
                actual: 60
            })
        ));
        assert!(matches!(
            decoder.decode_exact(bytes.slice(..20)),
            Err(FrameError::LengthMismatch { .. })
        ));
        assert!(matches!(
            decoder.decode_exact(bytes.slice(..3)),
            Err(FrameError::TooShort { .. })
        ));
    }

    #[test]
    fn a_length_below_the_header_is_an_error() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 27, 0, 0][..]);
        assert_eq!(
            FrameDecoder::default().decode(&mut buf),
            Err(FrameError::TooShort { len: 27 })
        );
    }

    #[test]
    fn an_oversize_frame_is_reported_with_its_header() {
        let decoder = FrameDecoder::new(64);
        let mut frame = sample();
        frame.payload = Bytes::from(vec![b' '; 100]);
        let bytes = frame.to_bytes();
        let mut buf = BytesMut::from(&bytes[..10]);
        assert!(matches!(
            decoder.decode(&mut buf),
            Ok(Decoded::Incomplete { needed: 18 })
        ));
        buf.extend_from_slice(&bytes[10..28]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(FrameError::TooLarge {
                len: 128,
                max: 64,
                kind: 0x0101,
                packet_id: PacketId::from_u128(7),
                flags: Flags::JSON,
            })
        );
    }
}

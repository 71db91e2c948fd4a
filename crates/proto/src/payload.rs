//! Payload encodings: protobuf binary or proto3 JSON, chosen per frame by the JSON flag.

use bytes::Bytes;

/// How a frame's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Encoding {
    /// Protobuf binary encoding.
    #[default]
    Protobuf,
    /// JSON following the proto3 JSON mapping (lowerCamelCase names, 64-bit integers as strings).
    Json,
}

/// A message of the schema: encodable both ways.
pub trait Payload:
    prost::Message + serde::Serialize + serde::de::DeserializeOwned + Default + Sized
{
}

impl<T> Payload for T where
    T: prost::Message + serde::Serialize + serde::de::DeserializeOwned + Default
{
}

/// A payload that does not decode as the message its frame type announces.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The bytes are not a valid protobuf encoding of the message.
    #[error("invalid protobuf payload: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The bytes are not valid JSON for the message.
    #[error("invalid JSON payload: {0}")]
    Json(#[from] serde_json::Error),
}

/// Encodes `msg` as `encoding` says.
///
/// Protobuf encoding cannot fail; JSON encoding fails only for an enum field that holds a
/// number outside the enum, which the encoder refuses rather than inventing a name.
pub fn encode_payload<M: Payload>(msg: &M, encoding: Encoding) -> Result<Bytes, PayloadError> {
    Ok(match encoding {
        Encoding::Protobuf => Bytes::from(msg.encode_to_vec()),
        Encoding::Json => Bytes::from(serde_json::to_vec(msg)?),
    })
}

/// Decodes `bytes` as a `M` in `encoding`. An empty payload is the default message in both.
pub fn decode_payload<M: Payload>(bytes: &[u8], encoding: Encoding) -> Result<M, PayloadError> {
    match encoding {
        Encoding::Protobuf => Ok(M::decode(bytes)?),
        Encoding::Json if bytes.is_empty() => Ok(M::default()),
        Encoding::Json => Ok(serde_json::from_slice(bytes)?),
    }
}

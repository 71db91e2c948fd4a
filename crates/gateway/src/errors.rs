//! Service errors on the binary protocol: the shared mapping of `tern_api::errors`.

use tern_core::ServiceError;
use tern_proto::pb;

/// The wire error for a service error. Internal details are logged there and never sent.
pub(crate) fn to_wire(err: &ServiceError) -> pb::Error {
    tern_api::errors::to_wire(err)
}

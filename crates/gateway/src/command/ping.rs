//! PING: liveness and clock for idle clients. Answered inline; allowed before login.

use tern_proto::pb;

pub(crate) fn run(req: pb::Ping, server_time_ms: i64) -> pb::Pong {
    pb::Pong {
        client_time_ms: req.client_time_ms,
        server_time_ms,
    }
}

//! Tern's connection layer: the fan-out and connection stages of the pipeline.
//!
//! Listeners accept TCP connections and WebSocket upgrades; each connection runs one
//! [`session`] task that turns frames into service calls and writes responses and pushes back.
//! The [`registry`] maps users to live connections; [`fanout::Fanout`] implements the core's
//! `Delivery` over it. Sessions never touch a store: they only call services.
#![forbid(unsafe_code)]

mod command;
mod errors;
pub mod fanout;
mod gateway;
pub mod observe;
pub mod outbox;
pub mod presence;
pub mod registry;
mod session;
mod transport;
mod websocket;

pub use gateway::{DEFAULT_MAX_FRAME_LEN_BEFORE_LOGIN, Gateway, GatewayConfig, Services};
pub use registry::KickPolicy;

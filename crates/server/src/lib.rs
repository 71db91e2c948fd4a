//! The Tern server: configuration → store → services → gateway and HTTP, plus shutdown.
//!
//! [`Server::start`] binds the listeners and returns a handle with the bound addresses (so
//! tests can use port 0); [`Server::shutdown`] stops accepting, lets sessions finish their
//! in-flight requests and say goodbye, commits every queued message, and closes the store.
#![forbid(unsafe_code)]

mod config;
mod http;
mod listen;
mod metrics_setup;
mod server;
pub mod tls;
mod web;

pub use config::{
    ApnsSetting, Config, ConfigError, FcmSetting, PushSettings, PushWebhookSetting, ServeArgs,
    WebPushSetting, WebhookSetting,
};
pub use server::{AdminStore, Server, ServerError, open_admin_keys};
pub use tern_core::clock::{Clock, ManualClock, SystemClock};

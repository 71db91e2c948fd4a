//! Transport-neutral request handlers: an authenticated caller and a request in, a result out.
//!
//! Every request a logged-in device (or, later, an app's backend with an admin key) may make is
//! handled here, once: the binary gateway and the HTTP API are front doors that authenticate,
//! decode their wire format into the protocol's request types, call [`Api`], and encode what it
//! answers. What only a long-lived connection can do (log in, log out, follow presence, observe,
//! keep its sends in order) stays with the gateway.
//!
//! Dispatch comes from one table (`handled!` below): a request type is one line there and one
//! `Handle` impl in `handlers/`; no front door writes an arm per type.
#![forbid(unsafe_code)]

pub mod errors;
mod handlers;
pub mod wire;

use std::{pin::Pin, sync::Arc};

use tern_core::{
    ConnectionId, DeviceId, ServiceError, UserId, accounts::AccountService,
    conversations::ConversationService, group_service::GroupService, messages::MessageService,
    presence::PresenceFollows, social::SocialService, sync::SyncService, typing::TypingService,
};
use tern_proto::{MessageType, Request, RequestPayload, Response};

pub use handlers::send::ack as send_ack;

/// The services the handlers call.
#[derive(Debug, Clone)]
pub struct Services {
    /// Registration, login, logout.
    pub accounts: AccountService,
    /// Sending and history.
    pub messages: MessageService,
    /// Inboxes, cursors and publication.
    pub sync: Arc<SyncService>,
    /// Groups.
    pub groups: GroupService,
    /// Typing signals.
    pub typing: Arc<TypingService>,
    /// Read marks, recall, edit and the conversation list.
    pub conversations: ConversationService,
    /// Profiles, friends and the blacklist.
    pub social: SocialService,
    /// Who follows whose presence: told when a following must end.
    pub presence: Arc<dyn PresenceFollows>,
    /// Message search.
    pub search: tern_core::search::SearchService,
    /// Push registrations.
    pub push: tern_core::push::PushService,
}

/// Who a request is made by: a user's device, and the connection it came on when it came on one
/// (a send's entry is not pushed back to that connection, which learns it from the ack).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The authenticated user.
    pub user: UserId,
    /// The device it authenticated as.
    pub device: DeviceId,
    /// The connection, for a front door that has connections.
    pub connection: Option<ConnectionId>,
}

/// One handler per request type.
pub trait Handle<R: RequestPayload> {
    /// Handles `request` for `caller`.
    fn handle(
        &self,
        caller: &Caller,
        request: R,
    ) -> impl Future<Output = Result<R::Response, ServiceError>> + Send;
}

/// What [`Api::dispatch`] answers with, once it completes.
pub type Answer = Pin<Box<dyn Future<Output = Result<Response, ServiceError>> + Send>>;

/// The handlers, over the services.
#[derive(Debug, Clone)]
pub struct Api {
    services: Arc<Services>,
}

impl Api {
    /// The handlers over `services`.
    pub fn new(services: Services) -> Self {
        Self {
            services: Arc::new(services),
        }
    }

    /// The services, for what a front door does itself.
    pub fn services(&self) -> &Services {
        &self.services
    }
}

/// Generates [`Api::dispatch`] from the request types this crate handles.
macro_rules! handled {
    ($($variant:ident),* $(,)?) => {
        impl Api {
            /// Whether requests of type `kind` are handled here.
            pub fn handles(kind: MessageType) -> bool {
                matches!(kind, $( MessageType::$variant )|*)
            }

            /// Starts handling `request` for `caller`; a request only a front door can handle
            /// (LOGIN, LOGOUT, PING, REGISTER, PRESENCE_*, OBSERVE) comes back unhandled.
            pub fn dispatch(&self, caller: Caller, request: Request) -> Result<Answer, Box<Request>> {
                match request {
                    $(
                        Request::$variant(req) => {
                            let api = self.clone();
                            Ok(Box::pin(async move {
                                api.handle(&caller, req).await.map(Response::$variant)
                            }))
                        }
                    )*
                    other => Err(Box::new(other)),
                }
            }
        }
    };
}

handled!(
    Send,
    Sync,
    AckCursor,
    History,
    MessageSearch,
    GroupCreate,
    GroupUpdate,
    GroupInfo,
    GroupMembers,
    GroupList,
    Typing,
    Read,
    Recall,
    Edit,
    ConversationList,
    ConversationUpdate,
    ProfileGet,
    ProfileUpdate,
    UserSearch,
    FriendRequest,
    FriendRespond,
    FriendDelete,
    FriendRemark,
    FriendList,
    Block,
    Unblock,
    BlockList,
    PushRegister,
    PushUnregister,
    PushAppState,
);

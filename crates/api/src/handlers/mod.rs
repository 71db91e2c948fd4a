//! One file per request type, each an `impl Handle<Request> for Api`: decode what the request
//! names into domain values, call the service, answer in the protocol's shape.

mod ack_cursor;
mod block;
mod block_list;
mod conversation_list;
mod conversation_update;
mod edit;
mod friend_delete;
mod friend_list;
mod friend_remark;
mod friend_request;
mod friend_respond;
mod group_create;
mod group_info;
mod group_list;
mod group_members;
mod group_update;
mod history;
mod message_search;
mod profile_get;
mod profile_update;
mod push_register;
mod read;
mod recall;
pub(crate) mod send;
mod sync;
mod typing;
mod unblock;
mod user_search;

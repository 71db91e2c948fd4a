//! GROUP_UPDATE: one change to a group, decided against its state when it commits.

use tern_core::{ServiceError, UserId, group_service::parse_users, groups::GroupChange, wire};
use tern_proto::pb::{self, group_update_request::Change};

use crate::{Api, Caller, Handle, wire::group_to_wire};

fn user(raw: &str) -> Result<UserId, ServiceError> {
    UserId::parse(raw)
}

/// The domain change a request asks for.
fn change_of(change: Option<Change>) -> Result<GroupChange, ServiceError> {
    let missing = || ServiceError::InvalidArgument("a change is required".into());
    Ok(match change.ok_or_else(missing)? {
        Change::AddMembers(list) => GroupChange::AddMembers(parse_users(&list.values)?),
        Change::RemoveMembers(list) => GroupChange::RemoveMembers(parse_users(&list.values)?),
        Change::Leave(true) => GroupChange::Leave,
        Change::Leave(false) => return Err(missing()),
        Change::Rename(name) => GroupChange::Rename(name),
        Change::SetAvatar(avatar) => GroupChange::SetAvatar(avatar),
        Change::SetAnnouncement(text) => GroupChange::SetAnnouncement(text),
        Change::SetRole(r) => {
            let role = wire::role_of(r.role).ok_or_else(|| {
                ServiceError::InvalidArgument(format!("unknown group role {}", r.role))
            })?;
            GroupChange::SetRole(user(&r.user_id)?, role)
        }
        Change::TransferOwner(to) => GroupChange::TransferOwner(user(&to)?),
        Change::MuteMember(m) => GroupChange::Mute(user(&m.user_id)?, m.until_ms),
        Change::MuteAll(on) => GroupChange::MuteAll(on),
        Change::SetHistoryVisibility(v) => {
            GroupChange::SetHistoryVisibility(wire::history_of(v).ok_or_else(|| {
                ServiceError::InvalidArgument(format!("unknown history visibility {v}"))
            })?)
        }
        Change::Dissolve(true) => GroupChange::Dissolve,
        Change::Dissolve(false) => return Err(missing()),
    })
}

impl Handle<pb::GroupUpdateRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::GroupUpdateRequest,
    ) -> Result<pb::GroupUpdateResponse, ServiceError> {
        let services = &*self.services;
        let change = change_of(req.change)?;
        let (view, event_seq) = services
            .groups
            .change(&caller.user, req.group_id, change)
            .await?;
        Ok(pb::GroupUpdateResponse {
            group: Some(group_to_wire(&view)),
            event_seq,
        })
    }
}

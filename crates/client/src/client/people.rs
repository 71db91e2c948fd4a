//! Requests about people: profiles, friends, blocks, presence and observing.

use super::*;

impl Client {
    /// The profiles of `users` (unknown ones are left out).
    pub async fn profiles(&self, users: &[&str]) -> Result<Vec<pb::Profile>, ClientError> {
        Ok(self
            .request(pb::ProfileGetRequest {
                user_ids: users.iter().map(|u| u.to_string()).collect(),
            })
            .await?
            .profiles)
    }

    /// Changes this user's profile fields and settings that are set.
    pub async fn update_profile(
        &self,
        update: pb::ProfileUpdateRequest,
    ) -> Result<pb::ProfileUpdateResponse, ClientError> {
        self.request(update).await
    }

    /// The user whose id is `query`, then users whose nickname starts with it.
    pub async fn search_users(
        &self,
        query: &str,
        limit: u32,
    ) -> Result<Vec<pb::Profile>, ClientError> {
        Ok(self
            .request(pb::UserSearchRequest {
                query: query.to_owned(),
                limit,
            })
            .await?
            .profiles)
    }

    /// Asks `to` to be friends; answers whether they are friends now (when `to` had asked
    /// first). Retried like sends: asking again only replaces the message.
    pub async fn request_friend(&self, to: &str, message: &str) -> Result<bool, ClientError> {
        Ok(self
            .request(pb::FriendRequestRequest {
                to_user: to.to_owned(),
                message: message.to_owned(),
            })
            .await?
            .friends)
    }

    /// Accepts or declines the pending request of `from`. Not retried: a request answered
    /// before the connection dropped is gone the second time.
    pub async fn respond_friend(&self, from: &str, accept: bool) -> Result<(), ClientError> {
        self.connection()
            .await?
            .request(pb::FriendRespondRequest {
                from_user: from.to_owned(),
                accept,
            })
            .await
            .map(drop)
    }

    /// Ends a friendship.
    pub async fn delete_friend(&self, user: &str) -> Result<(), ClientError> {
        self.request(pb::FriendDeleteRequest {
            user_id: user.to_owned(),
        })
        .await
        .map(drop)
    }

    /// Sets this user's private name for a friend.
    pub async fn remark_friend(&self, user: &str, remark: &str) -> Result<(), ClientError> {
        self.request(pb::FriendRemarkRequest {
            user_id: user.to_owned(),
            remark: remark.to_owned(),
        })
        .await
        .map(drop)
    }

    /// Friends and pending requests: all with `since_version` 0, else the changes since.
    pub async fn friends(&self, since_version: u64) -> Result<pb::FriendListResponse, ClientError> {
        self.request(pb::FriendListRequest { since_version }).await
    }

    /// Refuses `user`'s one-to-one messages and friend requests.
    pub async fn block(&self, user: &str) -> Result<(), ClientError> {
        self.request(pb::BlockRequest {
            user_id: user.to_owned(),
        })
        .await
        .map(drop)
    }

    /// Stops refusing `user`.
    pub async fn unblock(&self, user: &str) -> Result<(), ClientError> {
        self.request(pb::UnblockRequest {
            user_id: user.to_owned(),
        })
        .await
        .map(drop)
    }

    /// Everyone this user blocked.
    pub async fn blocked(&self) -> Result<Vec<String>, ClientError> {
        Ok(self.request(pb::BlockListRequest {}).await?.user_ids)
    }

    /// Follows the presence of `users` (friends, or this user): answers with it now, and every
    /// change arrives as [`Event::Presence`], also across reconnects.
    pub async fn follow_presence(&self, users: &[&str]) -> Result<Vec<pb::Presence>, ClientError> {
        let presences = self
            .request(pb::PresenceSubscribeRequest {
                user_ids: users.iter().map(|u| u.to_string()).collect(),
            })
            .await?
            .presences;
        // Only what the server accepted is followed again after a reconnect.
        self.shared
            .followed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(presences.iter().map(|p| p.user_id.clone()));
        Ok(presences)
    }

    /// Stops following the presence of `users`.
    pub async fn unfollow_presence(&self, users: &[&str]) -> Result<(), ClientError> {
        {
            let mut followed = self
                .shared
                .followed
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for u in users {
                followed.remove(*u);
            }
        }
        self.request(pb::PresenceUnsubscribeRequest {
            user_ids: users.iter().map(|u| u.to_string()).collect(),
        })
        .await
        .map(drop)
    }

    /// Observes a conversation's live messages (this user needs the observer role): each
    /// arrives as [`Event::Observed`], also across reconnects (messages stored while the client
    /// was disconnected are not replayed).
    pub async fn observe(&self, conversation_id: &str) -> Result<(), ClientError> {
        self.request(pb::ObserveRequest {
            conversation_id: conversation_id.to_owned(),
            stop: false,
        })
        .await?;
        self.shared
            .observed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(conversation_id.to_owned());
        Ok(())
    }

    /// Stops observing a conversation.
    pub async fn stop_observing(&self, conversation_id: &str) -> Result<(), ClientError> {
        self.shared
            .observed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(conversation_id);
        self.request(pb::ObserveRequest {
            conversation_id: conversation_id.to_owned(),
            stop: true,
        })
        .await
        .map(drop)
    }
}

//! The before-send hook over HTTP: each send is POSTed as JSON to the app's URL, signed like a
//! webhook, and the answer is the verdict (`{"action": "allow" | "reject" | "modify", ...}`).

use serde::Deserialize;
use serde_json::json;
use tern_core::{
    before_send::{BeforeSend, Draft, Verdict},
    pb,
    webhooks::sign,
};

/// The hook at a URL.
#[derive(Debug)]
pub struct HttpBeforeSend {
    client: reqwest::Client,
    url: String,
    key: Vec<u8>,
}

impl HttpBeforeSend {
    /// A hook at `url`, signing with `key` (see `tern_core::webhooks::secret_key`). The core
    /// bounds each check with its own timeout; `timeout` here only stops a request that
    /// outlives it.
    pub fn new(
        url: String,
        key: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("tern-before-send/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, url, key })
    }
}

/// The hook's answer, as it is written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    action: String,
    #[serde(default)]
    code: Option<u32>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    content: Option<pb::Content>,
}

#[async_trait::async_trait]
impl BeforeSend for HttpBeforeSend {
    async fn check(&self, draft: &Draft) -> Result<Verdict, String> {
        let body = json!({
            "sender": draft.sender.as_str(),
            "conversation_id": draft.conversation.as_str(),
            "to_user": draft.to_user.as_ref().map(|u| u.as_str()),
            "group_id": draft.group.map(|g| g.0.to_string()),
            "client_msg_id": draft.client_msg_id,
            "content": tern_core::wire::content(&draft.content),
        })
        .to_string();
        let id = format!("bs_{:016x}", rand::random::<u64>());
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let response = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", sign(&self.key, &id, timestamp, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the hook answered {status}"));
        }
        let answer: Answer = response
            .json()
            .await
            .map_err(|e| format!("the hook's answer is not a verdict: {e}"))?;
        match (answer.action.as_str(), answer.content) {
            ("allow", _) => Ok(Verdict::Allow),
            ("reject", _) => Ok(Verdict::Reject {
                code: answer.code,
                message: answer
                    .message
                    .unwrap_or_else(|| "the app refused this message".to_owned()),
            }),
            ("modify", Some(content)) => tern_core::wire::sent_content(content)
                .map(Verdict::Modify)
                .map_err(|e| format!("the hook's content is not valid: {e}")),
            ("modify", None) => Err("a \"modify\" answer needs \"content\"".to_owned()),
            (other, _) => Err(format!(
                "unknown action {other:?}: \"allow\", \"reject\" or \"modify\""
            )),
        }
    }
}

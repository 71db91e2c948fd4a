//! How messages print.

use tern_client::pb;

/// `SEQ SENDER: TEXT`, with non-text content in brackets.
pub(crate) fn message_line(m: &pb::Message) -> String {
    format!("{} {}: {}", m.seq, m.sender, content(m.content.as_ref()))
}

fn content(c: Option<&pb::Content>) -> String {
    match c.and_then(|c| c.body.as_ref()) {
        Some(pb::content::Body::Text(t)) => t.text.clone(),
        Some(pb::content::Body::Image(i)) => format!(
            "[image {}]",
            if i.url.is_empty() { &i.file_id } else { &i.url }
        ),
        Some(pb::content::Body::File(f)) => format!(
            "[file {}]",
            if f.name.is_empty() {
                &f.file_id
            } else {
                &f.name
            }
        ),
        Some(pb::content::Body::Custom(c)) => format!("[{}] {}", c.kind, c.data),
        None => "[empty]".into(),
    }
}

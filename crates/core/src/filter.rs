//! The content filter: a list of sensitive words, matched in text after the disguises people use
//! to slip past one (compatibility forms such as full-width letters, case, zero-width characters
//! between letters), and either refused or masked character by character.
//!
//! It is a rule of the send and edit paths in core, so every front door applies it the same
//! way. The list is swapped whole (on reload) and read without waiting behind a writer.

use std::sync::{Arc, RwLock};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use unicode_normalization::UnicodeNormalization;

use crate::ServiceError;

/// What a match does to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterAction {
    /// The send or edit is refused with `CONTENT_REJECTED`.
    #[default]
    Reject,
    /// Each character of a match is replaced with `*`, and the message goes through.
    Mask,
}

impl std::str::FromStr for FilterAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reject" => Ok(FilterAction::Reject),
            "mask" => Ok(FilterAction::Mask),
            other => Err(format!(
                "unknown filter action {other:?}; expected reject or mask"
            )),
        }
    }
}

/// Characters with no width that can sit between the letters of a word unseen.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}' | '\u{180E}'
    )
}

/// The form text is matched in: NFKC, lower case, no invisible characters. Each character of
/// the result remembers which character of the original it came from, so that a match can be
/// masked in the original.
fn fold(text: &str) -> (String, Vec<usize>) {
    let mut folded = String::with_capacity(text.len());
    // For every byte of `folded`, the index (in chars) of the original character.
    let mut origin = Vec::with_capacity(text.len());
    for (i, c) in text.chars().enumerate() {
        if invisible(c) {
            continue;
        }
        for n in std::iter::once(c).nfkc() {
            for l in n.to_lowercase() {
                let start = folded.len();
                folded.push(l);
                origin.extend(std::iter::repeat_n(i, folded.len() - start));
            }
        }
    }
    (folded, origin)
}

/// `text` in the form words are matched in (NFKC, lower case, no invisible characters); what
/// message search indexes and matches too.
pub fn folded(text: &str) -> String {
    // Search folds every committed text on the indexer's thread. ASCII is its own NFKC form and
    // has no invisible characters, so lower case is all it needs, and no character map is built.
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    fold(text).0
}

/// A compiled list of sensitive words and what a match does.
#[derive(Debug)]
pub struct WordFilter {
    matcher: AhoCorasick,
    action: FilterAction,
    words: usize,
}

/// What the filter made of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No word matched.
    Clean,
    /// A word matched and the action is to refuse.
    Rejected,
    /// Words matched and were masked: the text to store instead.
    Masked(String),
}

impl WordFilter {
    /// A filter of `words` (blank lines and lines starting with `#` are skipped; each word is
    /// folded as text is). `None` when no word remains.
    pub fn new<'a>(
        words: impl IntoIterator<Item = &'a str>,
        action: FilterAction,
    ) -> Result<Option<WordFilter>, String> {
        let folded: Vec<String> = words
            .into_iter()
            .map(str::trim)
            .filter(|w| !w.is_empty() && !w.starts_with('#'))
            .map(|w| fold(w).0)
            .filter(|w| !w.is_empty())
            .collect();
        if folded.is_empty() {
            return Ok(None);
        }
        let matcher = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&folded)
            .map_err(|e| format!("cannot build the word list: {e}"))?;
        Ok(Some(WordFilter {
            matcher,
            action,
            words: folded.len(),
        }))
    }

    /// How many words it holds.
    pub fn len(&self) -> usize {
        self.words
    }

    /// Whether it holds no word (never: [`WordFilter::new`] gives `None` then).
    pub fn is_empty(&self) -> bool {
        self.words == 0
    }

    /// Checks `text`.
    pub fn check(&self, text: &str) -> Verdict {
        let (folded, origin) = fold(text);
        let mut masked: Option<Vec<bool>> = None;
        for m in self.matcher.find_iter(&folded) {
            if self.action == FilterAction::Reject {
                return Verdict::Rejected;
            }
            let mask = masked.get_or_insert_with(|| vec![false; text.chars().count()]);
            let (first, last) = (origin[m.start()], origin[m.end() - 1]);
            // Every original character the match covers, the invisible ones between included.
            for slot in &mut mask[first..=last] {
                *slot = true;
            }
        }
        match masked {
            None => Verdict::Clean,
            Some(mask) => Verdict::Masked(
                text.chars()
                    .zip(mask)
                    .filter_map(|(c, m)| match (m, invisible(c)) {
                        (true, true) => None,
                        (true, false) => Some('*'),
                        (false, _) => Some(c),
                    })
                    .collect(),
            ),
        }
    }
}

/// The filter in force, shared by the services that take content and swapped whole on reload.
#[derive(Debug, Clone, Default)]
pub struct ContentFilter {
    current: Arc<RwLock<Option<Arc<WordFilter>>>>,
}

impl ContentFilter {
    /// A filter holding `filter` (none: everything passes).
    pub fn new(filter: Option<WordFilter>) -> ContentFilter {
        let f = ContentFilter::default();
        f.replace(filter);
        f
    }

    /// Puts `filter` in force for every send and edit from now on.
    pub fn replace(&self, filter: Option<WordFilter>) {
        self.replace_shared(filter.map(Arc::new));
    }

    /// Puts a filter shared with its owner in force for every send and edit from now on.
    pub fn replace_shared(&self, filter: Option<Arc<WordFilter>>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = filter;
    }

    /// The words in force.
    pub fn len(&self) -> usize {
        self.get().map_or(0, |f| f.len())
    }

    /// Whether no word is in force.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self) -> Option<Arc<WordFilter>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies the filter to a message's text: refuses it, masks it in place, or leaves it.
    pub fn apply(&self, content: &mut crate::content::Content) -> Result<(), ServiceError> {
        let Some(filter) = self.get() else {
            return Ok(());
        };
        if let crate::content::Content::Text(t) = content {
            match filter.check(&t.text) {
                Verdict::Clean => {}
                Verdict::Rejected => return Err(ServiceError::ContentRejected),
                Verdict::Masked(m) => t.text = m,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(words: &[&str], action: FilterAction) -> WordFilter {
        WordFilter::new(words.iter().copied(), action)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn folded_text_is_the_matching_form_ascii_or_not() {
        for text in [
            "Hello, World! 123",
            "MiXeD\tcase\n~`{}",
            "",
            "Ｈｅｌｌｏ",
            "ＡＢＣ\u{200B}déF",
            "Straße ǅ ﬁ",
            "你好 Ｗｏｒｌｄ",
        ] {
            assert_eq!(folded(text), fold(text).0, "{text:?}");
        }
        assert_eq!(folded("Hello WORLD"), "hello world");
    }

    #[test]
    fn chinese_words_are_masked_a_star_per_character() {
        let f = filter(&["坏蛋", "笨"], FilterAction::Mask);
        assert_eq!(f.check("你是坏蛋吗"), Verdict::Masked("你是**吗".into()));
        assert_eq!(f.check("笨笨的坏蛋"), Verdict::Masked("**的**".into()));
        assert_eq!(f.check("你好"), Verdict::Clean);
    }

    #[test]
    fn disguises_do_not_hide_a_word() {
        let f = filter(&["Spam"], FilterAction::Mask);
        // Case, full-width letters, and zero-width characters between the letters.
        assert_eq!(
            f.check("buy SPAM now"),
            Verdict::Masked("buy **** now".into())
        );
        assert_eq!(f.check("ｓｐａｍ!"), Verdict::Masked("****!".into()));
        assert_eq!(
            f.check("s\u{200B}p\u{200D}am and eggs"),
            Verdict::Masked("**** and eggs".into()),
            "the invisible characters inside go with the word"
        );
        assert_eq!(f.check("spa m"), Verdict::Clean);
    }

    #[test]
    fn reject_refuses_and_comments_and_blanks_are_not_words() {
        let f = filter(&["# a comment", "", "  bad  "], FilterAction::Reject);
        assert_eq!(f.len(), 1);
        assert_eq!(f.check("not BAD at all"), Verdict::Rejected);
        assert_eq!(f.check("fine"), Verdict::Clean);
        assert!(
            WordFilter::new(["", "# only comments"], FilterAction::Reject)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_swapped_filter_applies_to_the_next_message() {
        let shared = ContentFilter::new(None);
        let mut content = crate::content::Content::text("bad");
        shared.apply(&mut content).unwrap();
        shared.replace(Some(filter(&["bad"], FilterAction::Reject)));
        assert!(matches!(
            shared.apply(&mut content),
            Err(ServiceError::ContentRejected)
        ));
        shared.replace(Some(filter(&["bad"], FilterAction::Mask)));
        shared.apply(&mut content).unwrap();
        assert_eq!(content, crate::content::Content::text("***"));
    }
}

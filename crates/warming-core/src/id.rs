//! Validated conversation identifiers.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest accepted conversation id, in bytes (all accepted bytes are ASCII).
pub const MAX_CONVERSATION_ID_LEN: usize = 128;

/// A conversation id: 1 to 128 characters of `[A-Za-z0-9._:-]`.
///
/// Cheap to clone (a shared string), because every output
/// names its conversation.
///
/// ```
/// use warming_core::ConversationId;
/// assert!(ConversationId::new("chat-42:main").is_ok());
/// assert!(ConversationId::new("no spaces").is_err());
/// assert!(ConversationId::new("").is_err());
/// ```
#[derive(Clone, Eq, PartialOrd, Ord)]
pub struct ConversationId(Arc<str>);

/// Why a string is not a [`ConversationId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidConversationId {
    /// The string is empty.
    Empty,
    /// The string is longer than [`MAX_CONVERSATION_ID_LEN`].
    TooLong,
    /// The string has a character outside `[A-Za-z0-9._:-]`.
    BadCharacter,
}

impl fmt::Display for InvalidConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Self::Empty => "is empty",
            Self::TooLong => "is longer than 128 characters",
            Self::BadCharacter => "has a character outside [A-Za-z0-9._:-]",
        };
        write!(f, "conversation id {what}")
    }
}

impl std::error::Error for InvalidConversationId {}

impl ConversationId {
    /// Validates `raw` as a conversation id.
    ///
    /// # Errors
    /// [`InvalidConversationId`] when `raw` is empty, too long or has a
    /// character outside `[A-Za-z0-9._:-]`.
    pub fn new(raw: &str) -> Result<Self, InvalidConversationId> {
        if raw.is_empty() {
            return Err(InvalidConversationId::Empty);
        }
        if raw.len() > MAX_CONVERSATION_ID_LEN {
            return Err(InvalidConversationId::TooLong);
        }
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-');
        if !raw.bytes().all(allowed) {
            return Err(InvalidConversationId::BadCharacter);
        }
        Ok(Self(Arc::from(raw)))
    }

    /// The id as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for ConversationId {
    fn eq(&self, other: &Self) -> bool {
        // Ids handed back by the engine share its allocation: comparing the
        // pointer first skips a cache miss on the string in the hot path.
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl std::hash::Hash for ConversationId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Equal ids have equal strings, so hashing the string agrees with `eq`.
        self.0.hash(state);
    }
}

impl fmt::Debug for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for ConversationId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Deserialized through [`ConversationId::new`]: an invalid id is an error.
impl<'de> Deserialize<'de> for ConversationId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::new(&raw).map_err(serde::de::Error::custom)
    }
}

impl Serialize for ConversationId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_whole_alphabet_and_the_length_limit() {
        assert!(ConversationId::new("aZ09._:-").is_ok());
        assert!(ConversationId::new(&"x".repeat(128)).is_ok());
        assert_eq!(
            ConversationId::new(&"x".repeat(129)),
            Err(InvalidConversationId::TooLong)
        );
    }

    #[test]
    fn rejects_slashes_unicode_and_spaces() {
        for bad in ["a/b", "é", "a b", "a\nb", "../x", "a%2F"] {
            assert_eq!(
                ConversationId::new(bad),
                Err(InvalidConversationId::BadCharacter),
                "{bad:?}"
            );
        }
    }
}

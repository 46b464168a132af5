//! What the driver keeps of its reads from the store in flight (carried
//! out in `loading.rs`).

use std::collections::{HashSet, VecDeque};

use warming_core::{ConversationId, Restored};

use super::handle::Command;
use crate::ports::StoreError;

/// A read finished: the conversation, and what the store holds of it.
pub(super) type Loaded = (ConversationId, Result<Option<Restored>, StoreError>);

/// Conversations being read, and the commands waiting for them.
#[derive(Default)]
pub(super) struct Loading {
    /// Ids being read.
    pub(super) reading: HashSet<ConversationId>,
    /// Commands waiting, oldest first, with the ids each still waits for.
    pub(super) parked: VecDeque<(Vec<ConversationId>, Command)>,
}

//! The firehose (`com.atproto.sync.subscribeRepos`): event bodies exactly per
//! the lexicon ([`event`]), frames ([`frame`]), the per-subscriber cursor,
//! replay and slow-consumer rules ([`subscriber`]), and the fan-out over
//! sockets ([`hub`]) that both shells drive.
//!
//! Pure code: no platform calls, no `Send` bounds. Time comes in as clock
//! values, storage as the [`subscriber::EventLog`] trait, sockets as the
//! [`hub::SubscriberSocket`] trait.

pub mod event;
pub mod frame;
pub mod hub;
pub mod log;
pub mod subscriber;

pub use event::{account_event, commit_event, identity_event, sync_event, AccountStatus};
pub use frame::{error_frame, info_frame, EventBody, EventKind, StreamError};
pub use hub::{Hub, SubscriberSocket};
pub use log::SqlEventLog;
pub use subscriber::{
    plan_start, EventLog, Frame, LogBounds, LoggedEvent, MemoryEventLog, MemoryOutbox, Offered,
    Outbox, Start, Subscriber, SubscriberConfig, SubscriberError,
};

use crate::repo::RepoError;
use std::fmt;

/// Why an event could not be built or framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirehoseError {
    /// The commit output is inconsistent (another DID, a CID mismatch).
    Invalid(String),
    /// Above a lexicon limit (ops count, CAR size).
    TooLarge(String),
    /// A stored body is not a canonical map without `seq`.
    StoredBody(String),
    /// The seq does not fit a lexicon integer.
    SeqOutOfRange(u64),
    /// The repository core failed (encoding the commit, writing the CAR).
    Repo(RepoError),
}

impl fmt::Display for FirehoseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirehoseError::Invalid(m) => write!(f, "invalid event: {m}"),
            FirehoseError::TooLarge(m) => write!(f, "event too large: {m}"),
            FirehoseError::StoredBody(m) => write!(f, "stored event body: {m}"),
            FirehoseError::SeqOutOfRange(seq) => write!(f, "seq {seq} out of range"),
            FirehoseError::Repo(e) => write!(f, "repository: {e}"),
        }
    }
}

impl std::error::Error for FirehoseError {}

impl From<RepoError> for FirehoseError {
    fn from(e: RepoError) -> Self {
        FirehoseError::Repo(e)
    }
}

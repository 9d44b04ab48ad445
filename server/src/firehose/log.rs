//! The storage's sequencer table as the stream's [`EventLog`].
//!
//! The sequencer stores exactly what [`EventBody`] holds (the body without
//! `seq`, and the kind by name), so the write path appends
//! `event.new_event(time_ms)` in the commit's transaction and subscribers read
//! the same bytes back here.

use super::frame::{EventBody, EventKind};
use super::subscriber::{EventLog, LogBounds, LoggedEvent};
use crate::storage::sequencer::{earliest_seq, events_after, latest_seq, NewEvent};
use crate::storage::{Sql, StorageError};

impl EventBody {
    /// The row to give the sequencer (`append_event` or `persist_commit`);
    /// `time_ms` is what its retention prunes by.
    pub fn new_event(&self, time_ms: i64) -> NewEvent<'_> {
        NewEvent {
            kind: self.kind.name(),
            event: &self.body,
            time_ms,
        }
    }
}

/// Reads the sequencer table of a database.
pub struct SqlEventLog<'a> {
    db: &'a dyn Sql,
}

impl<'a> SqlEventLog<'a> {
    /// The log of `db` (already migrated).
    pub fn new(db: &'a dyn Sql) -> Self {
        SqlEventLog { db }
    }
}

fn to_seq(seq: i64) -> Result<u64, StorageError> {
    u64::try_from(seq).map_err(|_| StorageError::Corrupt(format!("negative seq {seq}")))
}

impl EventLog for SqlEventLog<'_> {
    type Error = StorageError;

    /// `newest` is the largest stored seq. Caveat: once retention has pruned
    /// every event, the table no longer knows the last number it assigned,
    /// so a cursor from before reads as a future cursor rather than an
    /// outdated one (retention keeps the newest events, so this needs a
    /// whole retention window without any event).
    fn bounds(&self) -> Result<LogBounds, StorageError> {
        Ok(LogBounds {
            oldest: earliest_seq(self.db)?.map(to_seq).transpose()?,
            newest: latest_seq(self.db)?.map(to_seq).transpose()?.unwrap_or(0),
        })
    }

    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<LoggedEvent>, StorageError> {
        // Cursors above i64::MAX cannot have events after them.
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        events_after(self.db, after, limit)?
            .into_iter()
            .map(|stored| {
                let kind = EventKind::from_name(&stored.kind).ok_or_else(|| {
                    StorageError::Corrupt(format!("unknown event kind {:?}", stored.kind))
                })?;
                Ok(LoggedEvent {
                    seq: to_seq(stored.seq)?,
                    event: EventBody {
                        kind,
                        body: stored.event,
                    },
                })
            })
            .collect()
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::firehose::{
        account_event, identity_event, MemoryOutbox, Subscriber, SubscriberConfig,
    };
    use crate::platform::native::NativeSql;
    use crate::storage::sequencer::append_event;
    use crate::storage::{migrate, sequencer::prune_events_before};
    use crate::syntax::Did;

    #[test]
    fn the_sequencer_table_is_an_event_log() {
        let db = NativeSql::open_in_memory().unwrap();
        migrate(&db).unwrap();
        let log = SqlEventLog::new(&db);
        assert_eq!(
            log.bounds().unwrap(),
            LogBounds {
                oldest: None,
                newest: 0
            }
        );
        let did = Did::new("did:plc:sqleventlogtest").unwrap();
        let events: Vec<EventBody> = (0..7)
            .map(|i| {
                if i % 2 == 0 {
                    identity_event(&did, None, i * 1000)
                } else {
                    account_event(&did, None, i * 1000)
                }
            })
            .collect();
        for (i, event) in events.iter().enumerate() {
            let seq = append_event(&db, &event.new_event(i as i64)).unwrap();
            assert_eq!(seq, i as i64 + 1);
        }
        assert_eq!(
            log.bounds().unwrap(),
            LogBounds {
                oldest: Some(1),
                newest: 7
            }
        );
        let page = log.read_after(2, 3).unwrap();
        assert_eq!(
            page.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(page[0].event, events[2]);
        assert_eq!(page[1].event, events[3]);
        assert_eq!(log.read_after(u64::MAX, 10).unwrap(), vec![]);

        // Replay through a subscriber gives the stored frames in order.
        let config = SubscriberConfig {
            page_size: 2,
            replay_high_water: 2,
            live_limit: 2,
        };
        let mut out = MemoryOutbox::new();
        let mut sub = Subscriber::connect(Some(0), log.bounds().unwrap(), &mut out);
        let mut frames = Vec::new();
        loop {
            sub.pump(&log, &config, &mut out).unwrap();
            match out.pop() {
                Some(frame) => frames.push(frame),
                None => break,
            }
        }
        assert!(sub.is_live());
        let expected: Vec<Vec<u8>> = events
            .iter()
            .enumerate()
            .map(|(i, e)| e.frame(i as u64 + 1).unwrap())
            .collect();
        assert_eq!(
            frames.iter().map(|f| f.to_vec()).collect::<Vec<_>>(),
            expected
        );

        // Retention: events before time 3 are gone, a cursor at 0 is outdated.
        prune_events_before(&db, 3).unwrap();
        assert_eq!(
            log.bounds().unwrap(),
            LogBounds {
                oldest: Some(4),
                newest: 7
            }
        );
        let mut out = MemoryOutbox::new();
        let mut sub = Subscriber::connect(Some(0), log.bounds().unwrap(), &mut out);
        sub.pump(&log, &config, &mut out).unwrap();
        let info = out.pop().unwrap();
        assert!(info.windows(14).any(|w| w == b"OutdatedCursor"));
    }

    #[test]
    fn unknown_kinds_are_corrupt_rows() {
        let db = NativeSql::open_in_memory().unwrap();
        migrate(&db).unwrap();
        append_event(
            &db,
            &NewEvent {
                kind: "handle",
                event: &[0xa0],
                time_ms: 0,
            },
        )
        .unwrap();
        assert!(matches!(
            SqlEventLog::new(&db).read_after(0, 10),
            Err(StorageError::Corrupt(_))
        ));
    }
}

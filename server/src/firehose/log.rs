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

    /// `newest` is the last seq the table assigned (its AUTOINCREMENT
    /// counter, see [`latest_seq`]), so it survives retention pruning every
    /// event: a cursor from before then reads as outdated, not future.
    fn bounds(&self) -> Result<LogBounds, StorageError> {
        Ok(LogBounds {
            oldest: earliest_seq(self.db)?.map(to_seq).transpose()?,
            newest: latest_seq(self.db)?.map(to_seq).transpose()?.unwrap_or(0),
        })
    }

    fn newest(&self) -> Result<u64, StorageError> {
        Ok(latest_seq(self.db)?.map(to_seq).transpose()?.unwrap_or(0))
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
        account_event, identity_event, plan_start, MemoryOutbox, Start, Subscriber,
        SubscriberConfig,
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
    fn a_cursor_from_before_a_total_prune_is_outdated_not_future() {
        let db = NativeSql::open_in_memory().unwrap();
        migrate(&db).unwrap();
        let did = Did::new("did:plc:sqleventlogtest").unwrap();
        for i in 0..5 {
            append_event(
                &db,
                &identity_event(&did, None, i * 1000).new_event(i as i64),
            )
            .unwrap();
        }
        let removed = crate::storage::sequencer::prune_events(&db, 1_000_000, None).unwrap();
        assert_eq!(removed, 5);
        let log = SqlEventLog::new(&db);
        let bounds = log.bounds().unwrap();
        assert_eq!(
            bounds,
            LogBounds {
                oldest: None,
                newest: 5
            },
            "the last assigned seq survives pruning"
        );
        assert!(matches!(
            plan_start(Some(3), bounds),
            Start::Replay { outdated: true, .. }
        ));
        assert_eq!(plan_start(Some(6), bounds), Start::FutureCursor);
        let config = SubscriberConfig {
            page_size: 4,
            replay_high_water: 4,
            live_limit: 4,
        };
        let mut out = MemoryOutbox::new();
        let mut sub = Subscriber::connect(Some(3), bounds, &mut out);
        sub.pump(&log, &config, &mut out).unwrap();
        let info = out.pop().unwrap();
        assert!(info.windows(14).any(|w| w == b"OutdatedCursor"));
        assert!(!info.windows(12).any(|w| w == b"FutureCursor"));

        // The next event continues the numbering.
        let seq = append_event(&db, &identity_event(&did, None, 9000).new_event(9)).unwrap();
        assert_eq!(seq, 6);
    }

    #[test]
    fn count_retention_keeps_the_newest() {
        let db = NativeSql::open_in_memory().unwrap();
        migrate(&db).unwrap();
        let did = Did::new("did:plc:sqleventlogtest").unwrap();
        for i in 0..10 {
            append_event(&db, &identity_event(&did, None, 0).new_event(1000 + i)).unwrap();
        }
        let prune = crate::storage::sequencer::prune_events;
        // By age first: events at 1000..=1002 are older than 1003.
        assert_eq!(prune(&db, 1003, None).unwrap(), 3);
        assert_eq!(prune(&db, 0, Some(4)).unwrap(), 3);
        let bounds = SqlEventLog::new(&db).bounds().unwrap();
        assert_eq!(
            bounds,
            LogBounds {
                oldest: Some(7),
                newest: 10
            }
        );
        assert_eq!(prune(&db, 0, Some(4)).unwrap(), 0, "nothing beyond the cap");
        assert_eq!(prune(&db, 0, Some(100)).unwrap(), 0);
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

//! One subscriber of the stream: where it starts (cursor rules), replay from
//! the event log in pages, the switch to live events, and the bound on what
//! it may hold unsent.
//!
//! Everything here is synchronous and pure over an [`EventLog`] and an
//! [`Outbox`] (the socket's send buffer); the transport ([`super::hub`]) drives
//! it:
//!
//! 1. [`Subscriber::connect`] with the requested cursor and the log's bounds;
//! 2. [`Subscriber::pump`] while it replays and the outbox has drained below
//!    its high-water mark, which sends the next pages from the log;
//! 3. [`Subscriber::offer`] with every event the sequencer appends, after it is
//!    stored (framed once, shared by all subscribers);
//! 4. close the connection once [`Subscriber::is_closed`] (after its last
//!    frames are written).
//!
//! # Switch-over from replay to live without gap or duplicate
//!
//! The log is the source of truth and every event is stored before it is
//! offered. The subscriber tracks the last seq it queued (`last_sent`):
//! - while replaying, offered events are ignored: they are in the log and a
//!   later page reads them;
//! - a page that comes back short (fewer events than asked with room to spare)
//!   means the log is exhausted: the subscriber turns live;
//! - once live, an offered event at or below `last_sent` is a duplicate and is
//!   dropped; if the log holds events between `last_sent` and it (a gap,
//!   e.g. events stored and broadcast while the subscriber was still
//!   replaying its last page), the subscriber goes back to replaying, which
//!   reads the gap and the offered event from the log in order.
//!
//! Replay pauses at the outbox's high-water mark, so a slow reader of a long
//! backlog just slows replay down. Live events are pushed without waiting: if
//! the outbox holds more than the live limit, the subscriber gets
//! `ConsumerTooSlow` and is closed, and no other subscriber or write waits.

use super::frame::{error_frame, info_frame, EventBody, StreamError, OUTDATED_CURSOR};
use super::FirehoseError;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;

/// A complete frame, shared between subscribers (framed once per event).
pub type Frame = Rc<[u8]>;

/// A stored event with its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    /// The number the sequencer assigned (strictly increasing, may have holes).
    pub seq: u64,
    /// The stored body.
    pub event: EventBody,
}

/// What the log holds, for the cursor rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBounds {
    /// The oldest event still kept (none when retention removed everything).
    pub oldest: Option<u64>,
    /// The last seq ever assigned (0 before the first event); survives pruning.
    pub newest: u64,
}

/// The sequencer's event log as the stream reads it. Implemented in memory for
/// tests and by the storage's sequencer table.
pub trait EventLog {
    /// Why reading failed.
    type Error;
    /// Oldest kept and newest assigned seq.
    fn bounds(&self) -> Result<LogBounds, Self::Error>;
    /// The newest assigned seq alone (what every request's broadcast asks first).
    fn newest(&self) -> Result<u64, Self::Error> {
        self.bounds().map(|b| b.newest)
    }
    /// Up to `limit` events with seq above `after`, in ascending seq order.
    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<LoggedEvent>, Self::Error>;
}

/// Where a new subscription starts, from its cursor and the log's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// No cursor: only events after `after` (the newest at connect time).
    Live {
        /// The newest seq when the subscriber connected.
        after: u64,
    },
    /// Replay every kept event after `after`, then go live. `outdated` means
    /// events after the requested cursor were already pruned, so the
    /// subscriber is told `#info OutdatedCursor` and replay starts at the
    /// oldest kept event.
    Replay {
        /// Replay events strictly after this seq.
        after: u64,
        /// Whether the requested cursor was older than retention.
        outdated: bool,
    },
    /// The cursor is past the newest event: send `FutureCursor` and close.
    FutureCursor,
}

/// The cursor rules of `subscribeRepos` as a pure function.
pub fn plan_start(cursor: Option<u64>, bounds: LogBounds) -> Start {
    let Some(cursor) = cursor else {
        return Start::Live {
            after: bounds.newest,
        };
    };
    if cursor > bounds.newest {
        return Start::FutureCursor;
    }
    if cursor == bounds.newest {
        return Start::Replay {
            after: cursor,
            outdated: false,
        };
    }
    match bounds.oldest {
        // Events after the cursor exist but none is kept.
        None => Start::Replay {
            after: bounds.newest,
            outdated: true,
        },
        // The first event after the cursor was pruned if the oldest kept one is
        // further on (seq grows by one per event; see `LogBounds`).
        Some(oldest) if oldest > cursor.saturating_add(1) => Start::Replay {
            after: oldest - 1,
            outdated: true,
        },
        Some(_) => Start::Replay {
            after: cursor,
            outdated: false,
        },
    }
}

/// Limits of one subscriber, in the unit its [`Outbox::buffered`] counts
/// (bytes for sockets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriberConfig {
    /// Events read from the log per replay page (at most).
    pub page_size: usize,
    /// Replay pauses while this much is buffered and unsent.
    pub replay_high_water: usize,
    /// A live event finding this much buffered disconnects the subscriber with
    /// `ConsumerTooSlow`: what one slow consumer may hold in memory.
    pub live_limit: usize,
}

impl SubscriberConfig {
    /// The figures for WebSockets (bytes): pages of 100 events, replay pausing
    /// at 1 MiB in flight, and a slow consumer dropped at 8 MiB (room for a
    /// few maximum-size commits above the replay mark).
    pub const SOCKET: SubscriberConfig = SubscriberConfig {
        page_size: 100,
        replay_high_water: 1024 * 1024,
        live_limit: 8 * 1024 * 1024,
    };
}

/// Where a subscriber's frames go: a socket's send buffer, or memory in tests.
pub trait Outbox {
    /// Queues a frame after the ones already queued.
    fn push(&mut self, frame: Frame);
    /// How much is queued and not yet written (bytes for sockets).
    fn buffered(&self) -> usize;
}

/// Why pumping or offering failed: the log, or a stored body that cannot be
/// framed.
#[derive(Debug, PartialEq, Eq)]
pub enum SubscriberError<E> {
    /// Reading the log failed.
    Log(E),
    /// A stored event could not be framed.
    Frame(FirehoseError),
}

impl<E: fmt::Display> fmt::Display for SubscriberError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriberError::Log(e) => write!(f, "event log: {e}"),
            SubscriberError::Frame(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for SubscriberError<E> {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Phase {
    Replaying,
    Live,
    /// An error frame is queued: close the connection after it.
    Closed,
}

/// What happened to an offered live event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Queued.
    Queued,
    /// Not queued here: already sent, or (still or again) replaying, which
    /// reads it from the log.
    Skipped,
    /// Too much was buffered: `ConsumerTooSlow` is queued and the subscriber
    /// is closed.
    Dropped,
    /// The subscriber was already closed.
    Closed,
}

/// One subscriber's position: all the state a connection needs, small and
/// serializable so a hibernating Durable Object keeps it in the socket's
/// attachment. Its frames go to an [`Outbox`] passed to each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscriber {
    phase: Phase,
    last_sent: u64,
}

impl Subscriber {
    /// A subscriber for `cursor` (see [`plan_start`]); queues `FutureCursor`
    /// (and is closed) or `#info OutdatedCursor` into `out`.
    pub fn connect(cursor: Option<u64>, bounds: LogBounds, out: &mut dyn Outbox) -> Self {
        let mut sub = Subscriber {
            phase: Phase::Live,
            last_sent: 0,
        };
        match plan_start(cursor, bounds) {
            Start::Live { after } => sub.last_sent = after,
            Start::FutureCursor => {
                sub.phase = Phase::Closed;
                out.push(
                    error_frame(StreamError::FutureCursor, Some("Cursor in the future.")).into(),
                );
            }
            Start::Replay { after, outdated } => {
                sub.phase = Phase::Replaying;
                sub.last_sent = after;
                if outdated {
                    out.push(
                        info_frame(
                            OUTDATED_CURSOR,
                            Some("Requested cursor exceeded limit. Possibly missing events"),
                        )
                        .into(),
                    );
                }
            }
        }
        sub
    }

    /// The last seq queued for this subscriber (its effective cursor).
    pub fn last_sent(&self) -> u64 {
        self.last_sent
    }

    /// Whether it still replays from the log.
    pub fn is_replaying(&self) -> bool {
        self.phase == Phase::Replaying
    }

    /// Whether it receives live events.
    pub fn is_live(&self) -> bool {
        self.phase == Phase::Live
    }

    /// Whether it is closed: close the connection once its frames are sent.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// While replaying, sends the next pages from the log until the outbox
    /// reaches its high-water mark; turns live once the log is exhausted.
    /// Call it again when the outbox has drained, until it stops replaying.
    /// Does nothing when live or closed.
    pub fn pump<L: EventLog + ?Sized>(
        &mut self,
        log: &L,
        config: &SubscriberConfig,
        out: &mut dyn Outbox,
    ) -> Result<(), SubscriberError<L::Error>> {
        let page_size = config.page_size.max(1);
        while self.phase == Phase::Replaying {
            if out.buffered() >= config.replay_high_water {
                return Ok(());
            }
            let page = log
                .read_after(self.last_sent, page_size)
                .map_err(SubscriberError::Log)?;
            let exhausted = page.len() < page_size;
            for logged in page {
                // The rest of the page is read again on the next pump.
                if out.buffered() >= config.replay_high_water {
                    return Ok(());
                }
                // A log that returns events out of order must not make us resend.
                if logged.seq <= self.last_sent {
                    continue;
                }
                let frame = logged
                    .event
                    .frame(logged.seq)
                    .map_err(SubscriberError::Frame)?;
                out.push(frame.into());
                self.last_sent = logged.seq;
            }
            if exhausted {
                self.phase = Phase::Live;
            }
        }
        Ok(())
    }

    /// Delivers a live event that the sequencer has just stored, `frame` being
    /// `event.frame(seq)`. See the module comment for the rules.
    pub fn offer<L: EventLog + ?Sized>(
        &mut self,
        log: &L,
        seq: u64,
        frame: &Frame,
        config: &SubscriberConfig,
        out: &mut dyn Outbox,
    ) -> Result<Offered, SubscriberError<L::Error>> {
        match self.phase {
            Phase::Closed => return Ok(Offered::Closed),
            Phase::Replaying => return Ok(Offered::Skipped),
            Phase::Live => {}
        }
        if seq <= self.last_sent {
            return Ok(Offered::Skipped);
        }
        // Events stored between the last one queued and this one (not offered
        // to us, e.g. stored while we turned live): go back to replaying, which
        // reads them and then this one from the log, without overflowing.
        if self.last_sent.saturating_add(1) < seq {
            let next = log
                .read_after(self.last_sent, 1)
                .map_err(SubscriberError::Log)?;
            if next.first().is_some_and(|e| e.seq < seq) {
                self.phase = Phase::Replaying;
                self.pump(log, config, out)?;
                return Ok(Offered::Skipped);
            }
            // Only holes in between.
        }
        if out.buffered() >= config.live_limit {
            // The backlog already queued cannot be recalled; the error follows it
            // and the connection closes.
            out.push(
                error_frame(
                    StreamError::ConsumerTooSlow,
                    Some("Stream consumer too slow"),
                )
                .into(),
            );
            self.phase = Phase::Closed;
            return Ok(Offered::Dropped);
        }
        out.push(frame.clone());
        self.last_sent = seq;
        Ok(Offered::Queued)
    }
}

/// An [`Outbox`] in memory, counting frames (tests and the firehose oracle).
#[derive(Debug, Default)]
pub struct MemoryOutbox {
    frames: VecDeque<Frame>,
}

impl MemoryOutbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the oldest queued frame.
    pub fn pop(&mut self) -> Option<Frame> {
        self.frames.pop_front()
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

impl Outbox for MemoryOutbox {
    fn push(&mut self, frame: Frame) {
        self.frames.push_back(frame);
    }

    fn buffered(&self) -> usize {
        self.frames.len()
    }
}

/// An in-memory [`EventLog`] (tests, and a model for the storage's table).
#[derive(Debug, Default, Clone)]
pub struct MemoryEventLog {
    events: Vec<LoggedEvent>,
    newest: u64,
}

impl MemoryEventLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `event` under the next seq and returns it.
    pub fn append(&mut self, event: EventBody) -> u64 {
        self.newest += 1;
        self.events.push(LoggedEvent {
            seq: self.newest,
            event,
        });
        self.newest
    }

    /// The stored event at `seq`.
    pub fn get(&self, seq: u64) -> Option<&LoggedEvent> {
        self.events.iter().find(|e| e.seq == seq)
    }

    /// Drops events below `seq` (retention).
    pub fn prune_before(&mut self, seq: u64) {
        self.events.retain(|e| e.seq >= seq);
    }

    /// Drops the event at `seq` (a hole, as left by a deleted account's events).
    pub fn remove(&mut self, seq: u64) {
        self.events.retain(|e| e.seq != seq);
    }
}

impl EventLog for MemoryEventLog {
    type Error = std::convert::Infallible;

    fn bounds(&self) -> Result<LogBounds, Self::Error> {
        Ok(LogBounds {
            oldest: self.events.first().map(|e| e.seq),
            newest: self.newest,
        })
    }

    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<LoggedEvent>, Self::Error> {
        let start = self.events.partition_point(|e| e.seq <= after);
        Ok(self.events[start..].iter().take(limit).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{cbor::decode_prefix, decode, encode, Map, Value};
    use crate::firehose::frame::EventKind;

    /// A small `#identity`-shaped body tagged with its position.
    fn body(n: u64) -> EventBody {
        let mut m = Map::new();
        m.insert("did".into(), Value::String(format!("did:web:e{n}.test")));
        EventBody {
            kind: EventKind::Identity,
            body: encode(&Value::Map(m)),
        }
    }

    fn log_with(n: u64) -> MemoryEventLog {
        let mut log = MemoryEventLog::new();
        for i in 1..=n {
            assert_eq!(log.append(body(i)), i);
        }
        log
    }

    /// What a frame is: a seq, an error name, or an info name.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Seq(u64),
        Error(String),
        Info(String),
    }

    fn seen(frame: &[u8]) -> Seen {
        let (header, used) = decode_prefix(frame).unwrap();
        let Value::Map(body) = decode(&frame[used..]).unwrap() else {
            panic!("body not a map")
        };
        let Value::Map(header) = header else {
            panic!("header not a map")
        };
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => panic!("{other:?}"),
        };
        match (&header["op"], header.get("t")) {
            (Value::Integer(-1), None) => Seen::Error(text(&body["error"])),
            (Value::Integer(1), Some(t)) if text(t) == "#info" => Seen::Info(text(&body["name"])),
            (Value::Integer(1), Some(_)) => match body["seq"] {
                Value::Integer(seq) => Seen::Seq(seq as u64),
                _ => panic!("seq"),
            },
            other => panic!("header {other:?}"),
        }
    }

    /// A subscriber with its in-memory outbox.
    struct Sub {
        sub: Subscriber,
        out: MemoryOutbox,
    }

    impl Sub {
        fn connect(cursor: Option<u64>, log: &MemoryEventLog) -> Sub {
            let mut out = MemoryOutbox::new();
            let sub = Subscriber::connect(cursor, log.bounds().unwrap(), &mut out);
            Sub { sub, out }
        }

        fn pump(
            &mut self,
            log: &MemoryEventLog,
        ) -> Result<(), SubscriberError<std::convert::Infallible>> {
            self.sub.pump(log, &CONFIG, &mut self.out)
        }

        fn offer(&mut self, log: &MemoryEventLog, seq: u64, frame: &Frame) -> Offered {
            self.sub
                .offer(log, seq, frame, &CONFIG, &mut self.out)
                .unwrap()
        }

        fn pop(&mut self) -> Option<Frame> {
            self.out.pop()
        }

        /// Whether it is closed and its last frames were taken.
        fn is_finished(&self) -> bool {
            self.sub.is_closed() && self.out.is_empty()
        }
    }

    fn drain(sub: &mut Sub, log: &MemoryEventLog) -> Vec<Seen> {
        let mut out = Vec::new();
        loop {
            sub.pump(log).unwrap();
            match sub.pop() {
                Some(frame) => out.push(seen(&frame)),
                None => return out,
            }
        }
    }

    fn append_and_offer(log: &mut MemoryEventLog, subs: &mut [&mut Sub]) -> Vec<Offered> {
        let seq = log.append(body(log.bounds().unwrap().newest + 1));
        let frame: Frame = log.get(seq).unwrap().event.frame(seq).unwrap().into();
        subs.iter_mut().map(|s| s.offer(log, seq, &frame)).collect()
    }

    fn seqs(range: std::ops::RangeInclusive<u64>) -> Vec<Seen> {
        range.map(Seen::Seq).collect()
    }

    const CONFIG: SubscriberConfig = SubscriberConfig {
        page_size: 3,
        replay_high_water: 8,
        live_limit: 8,
    };

    fn bounds(oldest: Option<u64>, newest: u64) -> LogBounds {
        LogBounds { oldest, newest }
    }

    #[test]
    fn plan_start_rules() {
        let b = bounds(Some(5), 10);
        assert_eq!(plan_start(None, b), Start::Live { after: 10 });
        assert_eq!(plan_start(Some(11), b), Start::FutureCursor);
        assert_eq!(
            plan_start(Some(10), b),
            Start::Replay {
                after: 10,
                outdated: false
            }
        );
        assert_eq!(
            plan_start(Some(7), b),
            Start::Replay {
                after: 7,
                outdated: false
            }
        );
        // Cursor 4: the next event (5) is the oldest kept, nothing was lost.
        assert_eq!(
            plan_start(Some(4), b),
            Start::Replay {
                after: 4,
                outdated: false
            }
        );
        assert_eq!(
            plan_start(Some(3), b),
            Start::Replay {
                after: 4,
                outdated: true
            }
        );
        assert_eq!(
            plan_start(Some(0), b),
            Start::Replay {
                after: 4,
                outdated: true
            }
        );
        // Empty log: cursor 0 is fine, anything above is in the future.
        let empty = bounds(None, 0);
        assert_eq!(
            plan_start(Some(0), empty),
            Start::Replay {
                after: 0,
                outdated: false
            }
        );
        assert_eq!(plan_start(Some(1), empty), Start::FutureCursor);
        assert_eq!(plan_start(None, empty), Start::Live { after: 0 });
        // Everything pruned: outdated, and nothing to replay.
        assert_eq!(
            plan_start(Some(3), bounds(None, 9)),
            Start::Replay {
                after: 9,
                outdated: true
            }
        );
        assert_eq!(plan_start(Some(u64::MAX), b), Start::FutureCursor);
    }

    #[test]
    fn no_cursor_is_live_only() {
        let mut log = log_with(5);
        let mut sub = Sub::connect(None, &log);
        assert!(sub.sub.is_live());
        assert_eq!(drain(&mut sub, &log), vec![]);
        append_and_offer(&mut log, &mut [&mut sub]);
        append_and_offer(&mut log, &mut [&mut sub]);
        assert_eq!(drain(&mut sub, &log), seqs(6..=7));
    }

    #[test]
    fn future_cursor_sends_the_error_then_closes() {
        let mut log = log_with(5);
        let mut sub = Sub::connect(Some(6), &log);
        assert!(!sub.is_finished());
        assert_eq!(
            append_and_offer(&mut log, &mut [&mut sub]),
            vec![Offered::Closed]
        );
        assert_eq!(
            drain(&mut sub, &log),
            vec![Seen::Error("FutureCursor".into())]
        );
        assert!(sub.is_finished());
    }

    #[test]
    fn outdated_cursor_gets_info_then_replay_from_oldest() {
        let mut log = log_with(20);
        log.prune_before(11);
        let mut sub = Sub::connect(Some(3), &log);
        let mut expected = vec![Seen::Info("OutdatedCursor".into())];
        expected.extend(seqs(11..=20));
        assert_eq!(drain(&mut sub, &log), expected);
        assert!(sub.sub.is_live());
    }

    #[test]
    fn replays_a_long_backlog_in_pages_without_overflowing() {
        // 100 events, an outbox of 8, pages of 3: replay pauses, never drops.
        let log = log_with(100);
        let mut sub = Sub::connect(Some(0), &log);
        assert!(sub.sub.is_replaying());
        sub.pump(&log).unwrap();
        assert_eq!(sub.out.len(), 8);
        assert!(sub.sub.is_replaying());
        assert_eq!(drain(&mut sub, &log), seqs(1..=100));
        assert!(sub.sub.is_live());
        assert_eq!(sub.sub.last_sent(), 100);
    }

    #[test]
    fn cursor_at_newest_replays_nothing_and_turns_live() {
        let mut log = log_with(4);
        let mut sub = Sub::connect(Some(4), &log);
        assert_eq!(drain(&mut sub, &log), vec![]);
        assert!(sub.sub.is_live());
        append_and_offer(&mut log, &mut [&mut sub]);
        assert_eq!(drain(&mut sub, &log), seqs(5..=5));
    }

    #[test]
    fn switch_over_has_no_gap_and_no_duplicate() {
        let mut log = log_with(30);
        let mut sub = Sub::connect(Some(2), &log);
        let mut got = Vec::new();
        // Events arrive while the subscriber is replaying: ignored, replay reads them.
        for _ in 0..5 {
            sub.pump(&log).unwrap();
            got.extend(sub.pop().map(|f| seen(&f)));
            assert_eq!(
                append_and_offer(&mut log, &mut [&mut sub]),
                vec![Offered::Skipped]
            );
        }
        got.extend(drain(&mut sub, &log));
        assert!(sub.sub.is_live());
        // Offering an already-sent event again is dropped as a duplicate.
        let frame: Frame = log.get(35).unwrap().event.frame(35).unwrap().into();
        assert_eq!(sub.offer(&log, 35, &frame), Offered::Skipped);
        // Live from here.
        assert_eq!(
            append_and_offer(&mut log, &mut [&mut sub]),
            vec![Offered::Queued]
        );
        got.extend(drain(&mut sub, &log));
        assert_eq!(got, seqs(3..=36));
    }

    #[test]
    fn events_stored_but_not_offered_are_read_from_the_log() {
        let mut log = log_with(3);
        let mut sub = Sub::connect(None, &log);
        // Two events stored without being offered (e.g. broadcast before the
        // subscriber registered), then one offered.
        log.append(body(4));
        log.append(body(5));
        assert_eq!(
            append_and_offer(&mut log, &mut [&mut sub]),
            vec![Offered::Skipped]
        );
        assert_eq!(drain(&mut sub, &log), seqs(4..=6));
        assert!(sub.sub.is_live());
    }

    #[test]
    fn holes_in_the_log_are_not_gaps() {
        let mut log = log_with(3);
        let mut sub = Sub::connect(None, &log);
        log.append(body(4));
        log.remove(4);
        assert_eq!(
            append_and_offer(&mut log, &mut [&mut sub]),
            vec![Offered::Queued]
        );
        assert!(sub.sub.is_live());
        assert_eq!(drain(&mut sub, &log), seqs(5..=5));
        // Replay skips holes too.
        let mut from_start = Sub::connect(Some(0), &log);
        let mut expected = seqs(1..=3);
        expected.push(Seen::Seq(5));
        assert_eq!(drain(&mut from_start, &log), expected);
    }

    #[test]
    fn a_slow_consumer_is_dropped_without_stalling_others() {
        let mut log = log_with(0);
        let mut slow = Sub::connect(None, &log);
        let mut fast = Sub::connect(None, &log);
        let mut fast_seen = Vec::new();
        for i in 1..=8 {
            let offered = append_and_offer(&mut log, &mut [&mut slow, &mut fast]);
            assert_eq!(offered, vec![Offered::Queued, Offered::Queued], "event {i}");
            fast_seen.extend(drain(&mut fast, &log));
        }
        // The ninth overflows the slow one's outbox of 8.
        let offered = append_and_offer(&mut log, &mut [&mut slow, &mut fast]);
        assert_eq!(offered, vec![Offered::Dropped, Offered::Queued]);
        fast_seen.extend(drain(&mut fast, &log));
        assert_eq!(fast_seen, seqs(1..=9));
        // The slow one gets what was already queued, then the error, then is
        // finished; later events are refused.
        assert_eq!(
            append_and_offer(&mut log, &mut [&mut slow]),
            vec![Offered::Closed]
        );
        let mut expected = seqs(1..=8);
        expected.push(Seen::Error("ConsumerTooSlow".into()));
        assert_eq!(drain(&mut slow, &log), expected);
        assert!(slow.is_finished());
    }

    #[test]
    fn corrupt_stored_events_are_errors_not_panics() {
        let mut log = MemoryEventLog::new();
        log.append(EventBody {
            kind: EventKind::Commit,
            body: vec![0xff],
        });
        let mut sub = Sub::connect(Some(0), &log);
        assert!(matches!(
            sub.pump(&log),
            Err(SubscriberError::Frame(FirehoseError::StoredBody(_)))
        ));
    }
}

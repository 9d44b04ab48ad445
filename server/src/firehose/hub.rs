//! The fan-out of `subscribeRepos`: the connected sockets, each with its
//! [`Subscriber`] state kept beside it (the socket attachment on a hibernating
//! Durable Object), driven from the event log.
//!
//! The hub keeps nothing in memory between calls: after every request the shell
//! calls [`Hub::broadcast`], which reads the log after the live subscribers'
//! positions and offers what was stored since. So events appended by any path
//! (commits, account and identity changes) reach subscribers, and a Durable
//! Object woken from hibernation continues exactly where each socket was.

use super::subscriber::{EventLog, Frame, LoggedEvent, Outbox, Subscriber, SubscriberConfig};

/// WebSocket close codes the stream uses.
pub mod close_code {
    /// After an error frame (FutureCursor, ConsumerTooSlow): policy violation.
    pub const POLICY: u16 = 1008;
    /// The server failed to read or frame the log.
    pub const INTERNAL: u16 = 1011;
}

/// A subscriber's connection as the hub drives it.
pub trait SubscriberSocket: Outbox {
    /// The subscriber state stored with the socket (none before [`Hub::open`]).
    fn state(&self) -> Option<Subscriber>;
    /// Stores the subscriber state with the socket.
    fn set_state(&mut self, sub: &Subscriber);
    /// Closes the connection after the frames already queued.
    fn close(&mut self, code: u16, reason: &str);
}

/// Drives every subscriber with one configuration.
#[derive(Debug, Clone)]
pub struct Hub {
    config: SubscriberConfig,
    /// The newest seq a broadcast of this instance has gone through (none after a start or an
    /// eviction): a request that stored nothing newer touches no socket.
    broadcast_through: std::cell::Cell<Option<u64>>,
}

impl Hub {
    /// A hub whose subscribers have `config`'s limits.
    pub fn new(config: SubscriberConfig) -> Hub {
        Hub {
            config,
            broadcast_through: std::cell::Cell::new(None),
        }
    }

    /// Starts a subscription on a new socket from `cursor`, replaying what it
    /// can. Returns whether it still replays (call [`Hub::pump`] again later).
    pub fn open<L: EventLog + ?Sized>(
        &self,
        log: &L,
        cursor: Option<u64>,
        socket: &mut dyn SubscriberSocket,
    ) -> bool
    where
        L::Error: std::fmt::Display,
    {
        let bounds = match log.bounds() {
            Ok(bounds) => bounds,
            Err(e) => {
                socket.close(close_code::INTERNAL, &truncate(&format!("event log: {e}")));
                return false;
            }
        };
        let sub = Subscriber::connect(cursor, bounds, socket);
        self.advance(log, sub, socket)
    }

    /// Continues replay on every socket that is behind and has drained.
    /// Returns whether some socket still replays.
    pub fn pump<L, S>(&self, log: &L, sockets: &mut [S]) -> bool
    where
        L: EventLog + ?Sized,
        L::Error: std::fmt::Display,
        S: SubscriberSocket,
    {
        let mut replaying = false;
        for socket in sockets.iter_mut() {
            if let Some(sub) = socket.state() {
                if sub.is_replaying() {
                    replaying |= self.advance(log, sub, socket);
                }
            }
        }
        replaying
    }

    /// Offers every event stored after the live subscribers' positions, each
    /// framed once, then continues replays. Returns whether some socket still
    /// replays. When nothing was stored since the last broadcast it reads no
    /// socket's state and returns at once (replays are the pump's to advance).
    pub fn broadcast<L, S>(&self, log: &L, sockets: &mut [S]) -> bool
    where
        L: EventLog + ?Sized,
        L::Error: std::fmt::Display,
        S: SubscriberSocket,
    {
        let newest = log.newest().ok();
        if newest.is_some() && newest == self.broadcast_through.get() {
            return false;
        }
        self.broadcast_through.set(newest);
        let mut subs: Vec<Option<Subscriber>> = sockets.iter().map(|s| s.state()).collect();
        let live_from = subs
            .iter()
            .flatten()
            .filter(|s| s.is_live())
            .map(|s| s.last_sent())
            .min();
        if let Some(mut after) = live_from {
            let page_size = self.config.page_size.max(1);
            loop {
                let page = match log.read_after(after, page_size) {
                    Ok(page) => page,
                    Err(e) => {
                        // Nobody can be served from an unreadable log.
                        for socket in sockets.iter_mut() {
                            socket
                                .close(close_code::INTERNAL, &truncate(&format!("event log: {e}")));
                        }
                        return false;
                    }
                };
                let exhausted = page.len() < page_size;
                for event in page {
                    after = event.seq;
                    self.offer_all(log, &event, sockets, &mut subs);
                }
                if exhausted {
                    break;
                }
            }
        }
        let mut replaying = false;
        for (socket, sub) in sockets.iter_mut().zip(subs) {
            if let Some(sub) = sub {
                if sub.is_replaying() {
                    replaying |= self.advance(log, sub, socket);
                } else {
                    socket.set_state(&sub);
                }
            }
        }
        replaying
    }

    /// Offers one event to every live subscriber, updating `subs` in place;
    /// a subscriber that overflows or fails is closed here.
    fn offer_all<L, S>(
        &self,
        log: &L,
        event: &LoggedEvent,
        sockets: &mut [S],
        subs: &mut [Option<Subscriber>],
    ) where
        L: EventLog + ?Sized,
        L::Error: std::fmt::Display,
        S: SubscriberSocket,
    {
        let wants = |sub: &Subscriber| sub.is_live() && sub.last_sent() < event.seq;
        if !subs.iter().flatten().any(wants) {
            return;
        }
        let frame: Frame = match event.event.frame(event.seq) {
            Ok(bytes) => bytes.into(),
            Err(e) => {
                for (socket, slot) in sockets.iter_mut().zip(subs.iter_mut()) {
                    if slot.as_ref().is_some_and(wants) {
                        socket.close(close_code::INTERNAL, &truncate(&e.to_string()));
                        *slot = None;
                    }
                }
                return;
            }
        };
        for (socket, slot) in sockets.iter_mut().zip(subs.iter_mut()) {
            let Some(sub) = slot else { continue };
            if !wants(sub) {
                continue;
            }
            match sub.offer(log, event.seq, &frame, &self.config, socket) {
                Ok(_) if sub.is_closed() => {
                    socket.set_state(sub);
                    socket.close(close_code::POLICY, "ConsumerTooSlow");
                    *slot = None;
                }
                Ok(_) => {}
                Err(e) => {
                    socket.close(close_code::INTERNAL, &truncate(&e.to_string()));
                    *slot = None;
                }
            }
        }
    }

    /// Pumps one subscriber, stores its state, and closes the socket if it
    /// is finished. Returns whether it still replays.
    fn advance<L: EventLog + ?Sized>(
        &self,
        log: &L,
        mut sub: Subscriber,
        socket: &mut dyn SubscriberSocket,
    ) -> bool
    where
        L::Error: std::fmt::Display,
    {
        if let Err(e) = sub.pump(log, &self.config, socket) {
            socket.close(close_code::INTERNAL, &truncate(&e.to_string()));
            return false;
        }
        socket.set_state(&sub);
        if sub.is_closed() {
            // Only a future cursor closes a subscriber before it is live.
            socket.close(close_code::POLICY, "FutureCursor");
            return false;
        }
        sub.is_replaying()
    }
}

/// WebSocket close reasons are limited to 123 bytes.
fn truncate(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{cbor::decode_prefix, decode, encode, Map, Value};
    use crate::firehose::frame::{EventBody, EventKind};
    use crate::firehose::subscriber::MemoryEventLog;

    /// A socket in memory: frames, state, and how it was closed.
    #[derive(Default)]
    struct TestSocket {
        frames: Vec<Frame>,
        /// Frames the peer has not read yet (what `buffered` reports).
        unread: usize,
        state: Option<Subscriber>,
        closed: Option<(u16, String)>,
        /// How often its state was read or written.
        touched: std::cell::Cell<usize>,
    }

    impl Outbox for TestSocket {
        fn push(&mut self, frame: Frame) {
            assert!(self.closed.is_none(), "sent after close");
            self.frames.push(frame);
            self.unread += 1;
        }
        fn buffered(&self) -> usize {
            self.unread
        }
    }

    impl SubscriberSocket for TestSocket {
        fn state(&self) -> Option<Subscriber> {
            self.touched.set(self.touched.get() + 1);
            self.state
        }
        fn set_state(&mut self, sub: &Subscriber) {
            self.touched.set(self.touched.get() + 1);
            self.state = Some(*sub);
        }
        fn close(&mut self, code: u16, reason: &str) {
            self.closed.get_or_insert((code, reason.to_owned()));
        }
    }

    impl TestSocket {
        /// Seqs of the sequenced frames, and names of error/info frames.
        fn seen(&self) -> Vec<String> {
            self.frames
                .iter()
                .map(|f| {
                    let (header, used) = decode_prefix(f).unwrap();
                    let Value::Map(body) = decode(&f[used..]).unwrap() else {
                        panic!()
                    };
                    let Value::Map(header) = header else { panic!() };
                    match (&header["op"], body.get("seq")) {
                        (Value::Integer(1), Some(Value::Integer(seq))) => seq.to_string(),
                        (_, _) => match body.get("error").or(body.get("name")) {
                            Some(Value::String(name)) => name.clone(),
                            other => panic!("{other:?}"),
                        },
                    }
                })
                .collect()
        }
    }

    const CONFIG: SubscriberConfig = SubscriberConfig {
        page_size: 4,
        replay_high_water: 10,
        live_limit: 20,
    };

    fn append(log: &mut MemoryEventLog, n: usize) {
        for _ in 0..n {
            let mut m = Map::new();
            m.insert("did".into(), Value::String("did:web:hub.test".into()));
            log.append(EventBody {
                kind: EventKind::Identity,
                body: encode(&Value::Map(m)),
            });
        }
    }

    fn seqs(range: std::ops::RangeInclusive<u64>) -> Vec<String> {
        range.map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_broadcast_with_nothing_new_touches_no_socket() {
        let hub = Hub::new(CONFIG);
        let mut log = MemoryEventLog::new();
        append(&mut log, 3);
        let mut sockets: Vec<TestSocket> = (0..5).map(|_| TestSocket::default()).collect();
        for socket in &mut sockets {
            assert!(!hub.open(&log, None, socket));
        }
        append(&mut log, 1);
        hub.broadcast(&log, &mut sockets);
        assert!(sockets.iter().all(|s| s.seen() == ["4"]));
        let touched: usize = sockets.iter().map(|s| s.touched.get()).sum();
        // Read-only requests: no state read or written, no frame.
        for _ in 0..10 {
            assert!(!hub.broadcast(&log, &mut sockets));
        }
        assert_eq!(
            sockets.iter().map(|s| s.touched.get()).sum::<usize>(),
            touched
        );
        // The next event goes out once to each.
        append(&mut log, 1);
        hub.broadcast(&log, &mut sockets);
        assert!(sockets.iter().all(|s| s.seen() == ["4", "5"]));
    }

    #[test]
    fn replay_pauses_at_high_water_and_resumes_when_drained() {
        let hub = Hub::new(CONFIG);
        let mut log = MemoryEventLog::new();
        append(&mut log, 35);
        let mut sockets = vec![TestSocket::default()];
        assert!(hub.open(&log, Some(0), &mut sockets[0]));
        assert_eq!(sockets[0].seen(), seqs(1..=10));
        // Not drained: nothing more.
        assert!(hub.pump(&log, &mut sockets));
        assert_eq!(sockets[0].frames.len(), 10);
        // Events stored meanwhile are read by replay, in order.
        append(&mut log, 2);
        assert!(hub.broadcast(&log, &mut sockets));
        while {
            sockets[0].unread = 0;
            hub.pump(&log, &mut sockets)
        } {}
        assert_eq!(sockets[0].seen(), seqs(1..=37));
        assert!(sockets[0].state.unwrap().is_live());
        append(&mut log, 1);
        assert!(!hub.broadcast(&log, &mut sockets));
        assert_eq!(sockets[0].seen(), seqs(1..=38));
        assert!(sockets[0].closed.is_none());
    }

    #[test]
    fn broadcast_reaches_live_sockets_once_and_drops_the_slow_one() {
        let hub = Hub::new(CONFIG);
        let mut log = MemoryEventLog::new();
        append(&mut log, 3);
        let mut sockets = vec![TestSocket::default(), TestSocket::default()];
        assert!(!hub.open(&log, None, &mut sockets[0]));
        assert!(!hub.open(&log, Some(3), &mut sockets[1]));
        for round in 0..25 {
            append(&mut log, 1);
            hub.broadcast(&log, &mut sockets);
            sockets[1].unread = 0;
            // Broadcasting again sends no duplicate.
            hub.broadcast(&log, &mut sockets);
            assert_eq!(sockets[1].frames.len(), round + 1);
        }
        assert_eq!(sockets[1].seen(), seqs(4..=28));
        assert!(sockets[1].closed.is_none());
        // The reader that never read got 20 frames, then ConsumerTooSlow and a close.
        let mut expected = seqs(4..=23);
        expected.push("ConsumerTooSlow".into());
        assert_eq!(sockets[0].seen(), expected);
        assert_eq!(
            sockets[0].closed,
            Some((close_code::POLICY, "ConsumerTooSlow".into()))
        );
    }

    #[test]
    fn a_future_cursor_gets_the_error_and_a_close() {
        let hub = Hub::new(CONFIG);
        let mut log = MemoryEventLog::new();
        append(&mut log, 2);
        let mut socket = TestSocket::default();
        assert!(!hub.open(&log, Some(3), &mut socket));
        assert_eq!(socket.seen(), vec!["FutureCursor".to_owned()]);
        assert_eq!(
            socket.closed.as_ref().map(|c| c.0),
            Some(close_code::POLICY)
        );
    }

    #[test]
    fn state_lives_in_the_socket_so_a_new_hub_continues() {
        let mut log = MemoryEventLog::new();
        append(&mut log, 2);
        let mut sockets = vec![TestSocket::default()];
        Hub::new(CONFIG).open(&log, None, &mut sockets[0]);
        append(&mut log, 3);
        // A Durable Object woken from hibernation has a fresh hub.
        Hub::new(CONFIG).broadcast(&log, &mut sockets);
        assert_eq!(sockets[0].seen(), seqs(3..=5));
    }
}

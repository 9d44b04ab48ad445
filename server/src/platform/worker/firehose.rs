//! `subscribeRepos` in the Durable Object, on the WebSocket Hibernation API: the runtime holds
//! the sockets (and answers pings) while the object sleeps, each socket's [`Subscriber`] state
//! lives in its attachment, and the runtime's `bufferedAmount` is the outbox the hub bounds.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use worker::{Response, Result, WebSocket, WebSocketPair};

use super::AccountObject;
use crate::firehose::{
    Frame, Hub, Outbox, SqlEventLog, Subscriber, SubscriberConfig, SubscriberSocket,
};

/// How often a paused replay checks whether its socket drained.
const PUMP_INTERVAL: Duration = Duration::from_millis(2);

/// The firehose's in-memory part: only whether a replay pump is running (everything else is in
/// the sockets' attachments and the event log, so hibernation loses nothing).
pub(crate) struct DoFirehose {
    hub: Hub,
    pumping: Cell<bool>,
}

impl Default for DoFirehose {
    fn default() -> Self {
        DoFirehose {
            hub: Hub::new(SubscriberConfig::SOCKET),
            pumping: Cell::new(false),
        }
    }
}

/// A hibernatable WebSocket as the hub drives it.
struct Socket(WebSocket);

impl Socket {
    fn js(&self) -> &worker::web_sys::WebSocket {
        self.0.as_ref()
    }
}

impl Outbox for Socket {
    fn push(&mut self, frame: Frame) {
        // A socket that can no longer send is closing; the runtime reports its close.
        let _ = self.0.send_with_bytes(&frame);
    }

    fn buffered(&self) -> usize {
        self.js().buffered_amount() as usize
    }
}

impl SubscriberSocket for Socket {
    fn state(&self) -> Option<Subscriber> {
        self.0.deserialize_attachment().ok().flatten()
    }

    fn set_state(&mut self, sub: &Subscriber) {
        let _ = self.0.serialize_attachment(sub);
    }

    fn close(&mut self, code: u16, reason: &str) {
        let _ = self.0.close(Some(code), Some(reason));
    }
}

/// A socket being accepted: everything goes through except the close, which waits.
struct Opening {
    socket: Socket,
    close: Option<(u16, String)>,
}

impl Outbox for Opening {
    fn push(&mut self, frame: Frame) {
        self.socket.push(frame);
    }

    fn buffered(&self) -> usize {
        self.socket.buffered()
    }
}

impl SubscriberSocket for Opening {
    fn state(&self) -> Option<Subscriber> {
        self.socket.state()
    }

    fn set_state(&mut self, sub: &Subscriber) {
        self.socket.set_state(sub);
    }

    fn close(&mut self, code: u16, reason: &str) {
        self.close.get_or_insert((code, reason.to_owned()));
    }
}

/// The open sockets (the runtime keeps them across hibernation).
fn sockets(object: &AccountObject) -> Vec<Socket> {
    object
        .state
        .get_websockets()
        .into_iter()
        // 1 is OPEN: closing sockets take no more frames.
        .filter(|ws| ws.as_ref().ready_state() == 1)
        .map(Socket)
        .collect()
}

/// Accepts an admitted subscribeRepos request (`cursor` from
/// [`crate::lifecycle::subscribe_repos`]) as a hibernatable WebSocket tagged with its client
/// `address` (how admission counts subscribers per address) and starts its replay.
pub(crate) fn subscribe(
    object: &Rc<AccountObject>,
    cursor: Option<u64>,
    address: &str,
) -> Result<Response> {
    let pair = WebSocketPair::new()?;
    object
        .state
        .accept_websocket_with_tags(&pair.server, &[address]);
    let log = SqlEventLog::new(object.account.sql.as_ref());
    let mut opening = Opening {
        socket: Socket(pair.server.clone()),
        close: None,
    };
    if object.firehose.hub.open(&log, cursor, &mut opening) {
        schedule_pump(object);
    }
    // The close waits until the upgrade response is out, so the client sees the 101, the error
    // frame and then the close, in that order.
    if let Some((code, reason)) = opening.close {
        let server = pair.server;
        worker::wasm_bindgen_futures::spawn_local(async move {
            worker::Delay::from(Duration::from_millis(100)).await;
            let _ = server.close(Some(code), Some(reason));
        });
    }
    Response::from_websocket(pair.client)
}

/// Sends what was stored since to every live subscriber (after each request).
pub(crate) fn broadcast(object: &Rc<AccountObject>) {
    let mut sockets = sockets(object);
    if sockets.is_empty() {
        return;
    }
    let log = SqlEventLog::new(object.account.sql.as_ref());
    if object.firehose.hub.broadcast(&log, &mut sockets) {
        schedule_pump(object);
    }
}

/// Keeps replaying paused subscribers as their sockets drain, until none replays. The pending
/// timer keeps the object awake meanwhile, which a replay needs anyway.
fn schedule_pump(object: &Rc<AccountObject>) {
    if object.firehose.pumping.replace(true) {
        return;
    }
    let object = object.clone();
    worker::wasm_bindgen_futures::spawn_local(async move {
        loop {
            worker::Delay::from(PUMP_INTERVAL).await;
            let mut sockets = sockets(&object);
            let log = SqlEventLog::new(object.account.sql.as_ref());
            if !object.firehose.hub.pump(&log, &mut sockets) {
                break;
            }
        }
        object.firehose.pumping.set(false);
    });
}

/// Completes the close handshake a subscriber started.
pub(crate) fn closed(ws: &WebSocket, code: usize, reason: &str) {
    // 1005 and 1006 are reported, never sent; answer those with a normal close.
    let code = match u16::try_from(code) {
        Ok(c) if c != 1005 && c != 1006 => c,
        _ => 1000,
    };
    let _ = ws.close(Some(code), Some(reason));
}

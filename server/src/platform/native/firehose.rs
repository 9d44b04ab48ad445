//! `subscribeRepos` on the native shell: the WebSocket upgrade on hyper, one writer task per
//! connection that counts the bytes queued for it (the outbox the hub bounds), and the same
//! [`Hub`] the Durable Object drives.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::account::Account;
use crate::firehose::{
    Frame, Hub, Outbox, SqlEventLog, Subscriber, SubscriberConfig, SubscriberSocket,
};

/// How often a paused replay checks whether its socket drained.
const PUMP_INTERVAL: Duration = Duration::from_millis(2);
/// The largest message or frame a subscriber may send (it has nothing to say but pings and
/// its close): more ends the connection.
const MAX_INBOUND_BYTES: usize = 4096;
/// How long one frame may take to be written before the peer counts as dead and is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the writer task of a connection sends.
enum Outgoing {
    Frame(Frame),
    Close(u16, String),
}

/// One subscriber's connection.
struct Connection {
    tx: mpsc::UnboundedSender<Outgoing>,
    /// Bytes queued and not yet written to the socket.
    buffered: Cell<usize>,
    state: Cell<Option<Subscriber>>,
    closed: Cell<bool>,
    /// The client address it is counted under.
    address: String,
}

/// The [`SubscriberSocket`] view of a connection.
struct Socket(Rc<Connection>);

impl Outbox for Socket {
    fn push(&mut self, frame: Frame) {
        if self.0.closed.get() {
            return;
        }
        self.0.buffered.set(self.0.buffered.get() + frame.len());
        if self.0.tx.send(Outgoing::Frame(frame)).is_err() {
            self.0.closed.set(true);
        }
    }

    fn buffered(&self) -> usize {
        self.0.buffered.get()
    }
}

impl SubscriberSocket for Socket {
    fn state(&self) -> Option<Subscriber> {
        self.0.state.get()
    }

    fn set_state(&mut self, sub: &Subscriber) {
        self.0.state.set(Some(*sub));
    }

    fn close(&mut self, code: u16, reason: &str) {
        if !self.0.closed.replace(true) {
            let _ = self.0.tx.send(Outgoing::Close(code, reason.to_owned()));
        }
    }
}

/// The native firehose: its connections and the hub that drives them.
pub struct NativeFirehose {
    hub: Hub,
    connections: RefCell<Vec<Rc<Connection>>>,
    pumping: Cell<bool>,
}

impl Default for NativeFirehose {
    fn default() -> Self {
        NativeFirehose {
            hub: Hub::new(SubscriberConfig::SOCKET),
            connections: RefCell::new(Vec::new()),
            pumping: Cell::new(false),
        }
    }
}

impl NativeFirehose {
    fn sockets(&self) -> Vec<Socket> {
        let mut connections = self.connections.borrow_mut();
        connections.retain(|c| !c.closed.get());
        connections.iter().map(|c| Socket(c.clone())).collect()
    }

    /// Sends what was stored since the last call to every live subscriber (after each request).
    pub fn broadcast(self: &Rc<Self>, account: &Rc<Account>) {
        let mut sockets = self.sockets();
        if sockets.is_empty() {
            return;
        }
        let log = SqlEventLog::new(account.sql.as_ref());
        if self.hub.broadcast(&log, &mut sockets) {
            self.schedule_pump(account);
        }
    }

    /// Keeps replaying paused subscribers as their sockets drain, until none replays.
    fn schedule_pump(self: &Rc<Self>, account: &Rc<Account>) {
        if self.pumping.replace(true) {
            return;
        }
        let this = self.clone();
        let account = account.clone();
        tokio::task::spawn_local(async move {
            loop {
                tokio::time::sleep(PUMP_INTERVAL).await;
                let mut sockets = this.sockets();
                let log = SqlEventLog::new(account.sql.as_ref());
                if !this.hub.pump(&log, &mut sockets) {
                    break;
                }
            }
            this.pumping.set(false);
        });
    }

    /// The subscribers open now, in total and from `address`.
    pub fn open_subscribers(&self, address: &str) -> crate::lifecycle::OpenSubscribers {
        let sockets = self.sockets();
        crate::lifecycle::OpenSubscribers {
            total: sockets.len(),
            from_address: sockets.iter().filter(|s| s.0.address == address).count(),
        }
    }

    /// Answers the upgrade of an admitted subscribeRepos request (`cursor` from
    /// [`crate::lifecycle::subscribe_repos`]) from `address` and starts the subscription.
    pub fn upgrade(
        self: &Rc<Self>,
        account: &Rc<Account>,
        req: hyper::Request<Incoming>,
        cursor: Option<u64>,
        address: String,
    ) -> hyper::Response<()> {
        // Admission checked the key is present; an absent one derives an accept the client
        // refuses.
        let key = req
            .headers()
            .get("sec-websocket-key")
            .map_or(&[][..], |k| k.as_bytes());
        let accept = derive_accept_key(key);
        let (tx, rx) = mpsc::unbounded_channel();
        let connection = Rc::new(Connection {
            tx,
            buffered: Cell::new(0),
            state: Cell::new(None),
            closed: Cell::new(false),
            address,
        });
        self.connections.borrow_mut().push(connection.clone());
        // Frames queue up until the upgrade completes; the handshake goes out first.
        let log = SqlEventLog::new(account.sql.as_ref());
        if self.hub.open(&log, cursor, &mut Socket(connection.clone())) {
            self.schedule_pump(account);
        }
        tokio::task::spawn_local(run_connection(req, connection, rx));
        let mut res = hyper::Response::new(());
        *res.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
        let headers = res.headers_mut();
        headers.insert(
            hyper::header::UPGRADE,
            hyper::header::HeaderValue::from_static("websocket"),
        );
        headers.insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("Upgrade"),
        );
        if let Ok(v) = accept.parse() {
            headers.insert("sec-websocket-accept", v);
        }
        res
    }
}

/// Writes the connection's frames until it closes, and reads (answering pings) until the
/// peer goes away.
async fn run_connection(
    req: hyper::Request<Incoming>,
    connection: Rc<Connection>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
) {
    let Ok(upgraded) = hyper::upgrade::on(req).await else {
        connection.closed.set(true);
        return;
    };
    let limits = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_INBOUND_BYTES))
        .max_frame_size(Some(MAX_INBOUND_BYTES));
    let ws =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(limits)).await;
    let (mut sink, mut stream) = ws.split();
    let reader = {
        let connection = connection.clone();
        async move {
            // Subscribers send nothing we act on; reading answers pings and notices the close.
            while let Some(Ok(msg)) = stream.next().await {
                if msg.is_close() {
                    break;
                }
            }
            connection.closed.set(true);
        }
    };
    let writer = async {
        while let Some(out) = rx.recv().await {
            match out {
                Outgoing::Frame(frame) => {
                    let len = frame.len();
                    let message = Message::Binary(Bytes::from(frame.to_vec()));
                    let sent = tokio::time::timeout(WRITE_TIMEOUT, sink.send(message)).await;
                    connection
                        .buffered
                        .set(connection.buffered.get().saturating_sub(len));
                    // A failed write, or a peer that stopped reading: the connection ends.
                    if !matches!(sent, Ok(Ok(()))) {
                        return true;
                    }
                }
                Outgoing::Close(code, reason) => {
                    let frame = CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    };
                    let close = sink.send(Message::Close(Some(frame)));
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, close).await;
                    break;
                }
            }
        }
        connection.closed.set(true);
        connection.buffered.set(0);
        false
    };
    // Whichever side ends first ends the connection; closing the sink completes the close
    // handshake (answering the peer's close, or flushing ours), unless the peer is dead.
    let dead = tokio::select! {
        _ = reader => false,
        dead = writer => dead,
    };
    if !dead {
        let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.close()).await;
    }
    connection.closed.set(true);
    connection.buffered.set(0);
}

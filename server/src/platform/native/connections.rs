//! What keeps the native server up under abuse: caps on connections (in total and per client
//! address), and the closing of connections that stall.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{MAX_CONNECTIONS, MAX_CONNECTIONS_PER_ADDRESS};

/// The open connections, counted in total and per client address.
#[derive(Default)]
pub(super) struct Connections {
    state: RefCell<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

impl Connections {
    /// A slot for a new connection from `ip`, or none when a cap is reached. The slot is given
    /// back when dropped.
    pub(super) fn admit(self: &Rc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut counts = self.state.borrow_mut();
        let of_address = counts.by_address.get(&ip).copied().unwrap_or(0);
        if counts.total >= MAX_CONNECTIONS || of_address >= MAX_CONNECTIONS_PER_ADDRESS {
            return None;
        }
        counts.total += 1;
        counts.by_address.insert(ip, of_address + 1);
        Some(Slot {
            connections: self.clone(),
            ip,
        })
    }
}

/// One admitted connection.
pub(super) struct Slot {
    connections: Rc<Connections>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.connections.state.borrow_mut();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.by_address.remove(&self.ip);
            }
        }
    }
}

/// When a byte last moved on a connection (shared with the stream, which hyper may move to
/// another task after an upgrade, hence atomic).
pub(super) struct Progress {
    start: Instant,
    last_ms: AtomicU64,
}

impl Progress {
    fn note(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When a byte last moved.
    pub(super) fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A connection's stream that notes when a byte last moved either way.
pub(super) struct Watched<T> {
    io: T,
    progress: Arc<Progress>,
}

impl<T> Watched<T> {
    /// Wraps `io`, with the record of its progress.
    pub(super) fn new(io: T) -> (Self, Arc<Progress>) {
        let progress = Arc::new(Progress {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        });
        (
            Watched {
                io,
                progress: progress.clone(),
            },
            progress,
        )
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.progress.note();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.progress.note();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Runs `connection` until it ends, or until no byte moved for `stall`: then it is dropped,
/// which closes it. (Idle time between requests is the header timeout's to end.)
pub(super) async fn until_stalled<F: Future>(connection: F, progress: &Progress, stall: Duration) {
    tokio::pin!(connection);
    loop {
        let deadline = progress.last() + stall;
        tokio::select! {
            _ = &mut connection => return,
            _ = tokio::time::sleep_until(deadline.into()) => {
                if progress.last().elapsed() >= stall {
                    return;
                }
            }
        }
    }
}

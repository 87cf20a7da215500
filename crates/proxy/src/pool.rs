//! Idle keep-alive connections to the peers of a group (nginx `keepalive N`). A connection is
//! leased for one request and goes back when its response body has been read to the end (see
//! [`crate::body::TimedBody`] and [`crate::fast`]), so nothing has to wait for it in the
//! background.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;

/// The sending half of one upstream connection of the general path (hyper drives the socket in
/// its own task).
pub type Upstream = SendRequest<Full<Bytes>>;

/// A pooled connection that can tell whether its upstream has closed it.
pub trait Idle {
    fn is_closed(&mut self) -> bool;
}

impl Idle for Upstream {
    fn is_closed(&mut self) -> bool {
        SendRequest::is_closed(self)
    }
}

pub struct Pool<C> {
    idle: Mutex<Vec<Vec<C>>>,
    per_peer: usize,
}

impl<C: Idle> Pool<C> {
    /// A pool for `peers` peers keeping at most `per_peer` idle connections to each.
    pub fn new(peers: usize, per_peer: usize) -> Arc<Self> {
        Arc::new(Pool {
            idle: Mutex::new((0..peers).map(|_| Vec::new()).collect()),
            per_peer,
        })
    }

    /// The most recently returned connection to `peer` that is still open. It may still be
    /// finishing its previous exchange: wait for [`SendRequest::ready`] before sending.
    pub fn take(&self, peer: usize) -> Option<C> {
        let mut idle = self.lock();
        let list = idle.get_mut(peer)?;
        while let Some(mut conn) = list.pop() {
            if !conn.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn`, an open connection, unless `peer` has enough idle ones already.
    pub fn put(&self, peer: usize, conn: C) {
        if let Some(list) = self.lock().get_mut(peer) {
            if list.len() < self.per_peer {
                list.push(conn);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Vec<C>>> {
        // Poisoning only means a panic elsewhere mid-push; the lists are still usable.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection serving one response; [`Lease::release`] puts it back once the response is
/// complete. Dropped instead (response cut short), the connection closes with it.
pub struct Lease {
    pool: Arc<Pool<Upstream>>,
    peer: usize,
    conn: Upstream,
}

impl Lease {
    pub fn new(pool: Arc<Pool<Upstream>>, peer: usize, conn: Upstream) -> Self {
        Lease { pool, peer, conn }
    }

    pub fn release(self) {
        if !self.conn.is_closed() {
            self.pool.put(self.peer, self.conn);
        }
    }
}

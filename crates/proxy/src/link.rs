//! An upstream connection of the fast path: the socket itself (through the fault layer), read
//! and written by the client connection's task, with no task or channel of its own.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use netfault::tcp::FaultStream;
use tokio::io::{AsyncRead, ReadBuf};

use crate::pool::Idle;

pub struct Link {
    pub stream: FaultStream,
    /// Whether it carried a request before (a pooled keep-alive connection).
    pub reused: bool,
}

impl Idle for Link {
    /// An idle connection has nothing to read: EOF, an error or stray bytes all mean it cannot
    /// carry a request any more (nginx closes such a cached connection as soon as it is
    /// readable). Costs no system call while the socket is not readable.
    fn is_closed(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        !matches!(
            Pin::new(&mut self.stream).poll_read(&mut cx, &mut buf),
            Poll::Pending
        )
    }
}

//! Batched UDP for a swarm's shared socket: `recvmmsg` drains up to [`BATCH`] datagrams per
//! readiness event and `sendmmsg` sends up to [`BATCH`] per system call. In a registration storm
//! thousands of REGISTERs leave and their responses arrive within milliseconds; one system call
//! per datagram each way was a third of the simulator's CPU.
//!
//! Only for a socket with no fault rule in force: the fault layer works per datagram, so the
//! swarm's loop uses [`netfault::FaultUdpSocket`] one datagram at a time while any rule exists.
//! Linux only (both calls are Linux's); other systems get the per-datagram path.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::Bytes;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per system call.
pub const BATCH: usize = 64;

/// Receive slot per datagram. SIP sends messages this large over TCP (RFC 3261 §18.1.1 asks
/// for congestion control above 1300 bytes), so a cut datagram is not SIP we can answer.
pub const SLOT: usize = 8 * 1024;

/// Receive buffers, reused for every batch.
pub struct RecvBatch {
    buf: Vec<u8>,
    got: Vec<(usize, SocketAddr)>,
    /// Datagrams larger than [`SLOT`] dropped so far.
    pub truncated: u64,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            // Zeroed memory from a fresh mapping: only the pages datagrams land in get touched.
            buf: vec![0; BATCH * SLOT],
            got: Vec::with_capacity(BATCH),
            truncated: 0,
        }
    }
}

impl RecvBatch {
    /// Waits until the socket is readable and receives what is queued, up to [`BATCH`]
    /// datagrams; returns how many arrived (at least one).
    pub async fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.got.clear();
        let (buf, got, truncated) = (&mut self.buf, &mut self.got, &mut self.truncated);
        socket
            .async_io(Interest::READABLE, || {
                recv_mmsg(socket, buf, got, truncated)
            })
            .await
    }

    /// Receives one datagram through the fault layer (rules in force) into the first slot.
    pub async fn recv_one(&mut self, socket: &netfault::FaultUdpSocket) -> io::Result<usize> {
        self.got.clear();
        let (n, from) = socket.recv_from(&mut self.buf[..SLOT]).await?;
        self.got.push((n, from));
        Ok(1)
    }

    /// The datagrams of the last batch.
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> + '_ {
        self.got
            .iter()
            .enumerate()
            .map(|(i, &(n, from))| (&self.buf[i * SLOT..i * SLOT + n], from))
    }
}

#[cfg(target_os = "linux")]
fn recv_mmsg(
    socket: &UdpSocket,
    buf: &mut [u8],
    got: &mut Vec<(usize, SocketAddr)>,
    truncated: &mut u64,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
    let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (i, slot) in buf.chunks_exact_mut(SLOT).take(BATCH).enumerate() {
        iovs[i] = libc::iovec {
            iov_base: slot.as_mut_ptr().cast(),
            iov_len: SLOT,
        };
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        h.msg_iov = &mut iovs[i];
        h.msg_iovlen = 1;
    }
    // SAFETY: every header points at a live slot of `buf` and a live address of `names`, each
    // of the size given; the kernel writes no further than those sizes.
    let n = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            hdrs.as_mut_ptr(),
            BATCH as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    for i in 0..n.min(BATCH) {
        let h = &hdrs[i];
        let from = socket_addr(&names[i]);
        if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            *truncated += 1;
            // Keep the slot so indices stay aligned; an empty datagram is ignored like a
            // keep-alive.
            got.push((0, from.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))));
            continue;
        }
        match from {
            Some(from) => got.push(((h.msg_len as usize).min(SLOT), from)),
            None => got.push((0, SocketAddr::from(([0, 0, 0, 0], 0)))),
        }
    }
    Ok(n)
}

#[cfg(not(target_os = "linux"))]
fn recv_mmsg(
    socket: &UdpSocket,
    buf: &mut [u8],
    got: &mut Vec<(usize, SocketAddr)>,
    _truncated: &mut u64,
) -> io::Result<usize> {
    let (n, from) = socket.try_recv_from(&mut buf[..SLOT])?;
    got.push((n, from));
    Ok(1)
}

#[cfg(target_os = "linux")]
fn socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(target_os = "linux")]
fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut s: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin = unsafe {
                &mut *(&mut s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(&mut s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (s, len as libc::socklen_t)
}

/// Sends the first [`BATCH`] of `msgs` in one system call, waiting while the socket buffer is
/// full. Returns how many left (at least one unless `msgs` is empty), or the error of the first
/// one, which did not leave: the caller reports it and goes on after it. sendmmsg stops at a
/// datagram that fails and reports that one on the next call, which is how it gets here.
pub async fn send_batch(socket: &UdpSocket, msgs: &[(SocketAddr, Bytes)]) -> io::Result<usize> {
    if msgs.is_empty() {
        return Ok(0);
    }
    socket
        .async_io(Interest::WRITABLE, || send_mmsg(socket, msgs))
        .await
}

#[cfg(target_os = "linux")]
fn send_mmsg(socket: &UdpSocket, msgs: &[(SocketAddr, Bytes)]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let count = msgs.len().min(BATCH);
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
    let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (i, (to, bytes)) in msgs.iter().take(count).enumerate() {
        let (name, len) = sockaddr(*to);
        names[i] = name;
        iovs[i] = libc::iovec {
            // The kernel only reads through this pointer.
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        };
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = len;
        h.msg_iov = &mut iovs[i];
        h.msg_iovlen = 1;
    }
    // SAFETY: every header points at live bytes and a live address of the sizes given.
    let n = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            hdrs.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(not(target_os = "linux"))]
fn send_mmsg(socket: &UdpSocket, msgs: &[(SocketAddr, Bytes)]) -> io::Result<usize> {
    let (to, bytes) = &msgs[0];
    socket.try_send_to(bytes, *to).map(|_| 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_goes_out_and_comes_back_in_order() {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = b.local_addr().unwrap();
        let msgs: Vec<(SocketAddr, Bytes)> = (0..BATCH + 6)
            .map(|i| (to, Bytes::from(format!("datagram {i}"))))
            .collect();
        let mut sent = 0;
        while sent < msgs.len() {
            let end = (sent + BATCH).min(msgs.len());
            sent += send_batch(&a, &msgs[sent..end]).await.unwrap();
        }
        let mut batch = RecvBatch::default();
        let mut seen = Vec::new();
        while seen.len() < msgs.len() {
            let n = batch.recv(&b).await.unwrap();
            assert!((1..=BATCH).contains(&n));
            for (bytes, from) in batch.datagrams() {
                assert_eq!(from, a.local_addr().unwrap());
                seen.push(String::from_utf8(bytes.to_vec()).unwrap());
            }
        }
        let want: Vec<String> = (0..msgs.len()).map(|i| format!("datagram {i}")).collect();
        assert_eq!(seen, want);
    }

    #[tokio::test]
    async fn a_datagram_larger_than_a_slot_is_dropped_and_counted() {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = b.local_addr().unwrap();
        let big = Bytes::from(vec![b'x'; SLOT + 1]);
        let msgs = [(to, big), (to, Bytes::from_static(b"ok"))];
        assert_eq!(send_batch(&a, &msgs).await.unwrap(), 2);
        let mut batch = RecvBatch::default();
        let mut got = Vec::new();
        while got.len() < 2 {
            batch.recv(&b).await.unwrap();
            got.extend(batch.datagrams().map(|(d, _)| d.to_vec()));
        }
        assert_eq!(got, vec![Vec::new(), b"ok".to_vec()]);
        assert_eq!(batch.truncated, 1);
    }
}

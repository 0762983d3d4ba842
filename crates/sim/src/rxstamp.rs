//! When did a message arrive? The kernel's receive timestamp, not the reader's wake-up.
//!
//! Used on both ends of a load test: the load generator times an answer to its last segment's
//! arrival, and the simulator counts an injected latency from the request's arrival.
//!
//! A response time taken with `Instant::now()` after hyper hands over the answer includes the
//! time the generator's own thread took to wake up and parse it. On a virtual machine whose
//! idle vCPUs halt, that wake-up grows with how long the thread slept: measured on the 2-vCPU
//! development box, an answer 200 µs after the request was read ~30 µs late, where an
//! immediate answer was read almost at once — a generator artefact a 150 µs gate must not
//! charge to the gateway. So the timed connections ask the kernel to stamp every received
//! segment (`SO_TIMESTAMPNS`) and read with `recvmsg`: the stamp of the last segment of the
//! answer is when the answer was complete on this host. [`Arrival::instant`] turns it into an
//! `Instant`; the gap to the user-space time is recorded as the run's receive delay. The
//! simulator's side is the mirror image: its own wake-up to read a request must not lengthen
//! the latency it was told to inject.
//!
//! The stamp is `CLOCK_REALTIME`. It is converted by its age (realtime now − stamp) taken
//! right after the message was read, so a clock step between runs cannot skew it; an age that
//! is negative or over `MAX_AGE` (a clock step during the exchange) is not trusted and the
//! user-space time is used instead.
//!
//! Linux stamps arriving packets only while some socket of the host wants stamps: it turns
//! stamping on a moment after the first socket asks (the switch is a deferred work item) and
//! off again when the last such socket closes. A request sent on a fresh connection, before
//! the server accepted it and asked for stamps, would then arrive unstamped; so a server asks
//! on its listening socket too ([`stamp_listener`]), which keeps stamping on while it listens
//! (accepted sockets also inherit the option). The first messages of a run can still arrive
//! unstamped; they are timed in user space, and the load manifest's `kernel_stamped_share`
//! says how many answers were stamped.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt::ReceiveTimestampns,
};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Set once any socket of this process was refused `SO_TIMESTAMPNS`: answers are then timed
/// when read, so the load generator's `tick` pacer must not delay reading them.
static REFUSED: AtomicBool = AtomicBool::new(false);

/// Whether the kernel refused receive stamps to a socket of this process.
pub fn refused() -> bool {
    REFUSED.load(Ordering::Relaxed)
}

/// Asks the kernel to stamp what arrives for `listener`'s connections, so a request that
/// arrives before its connection is accepted is stamped too (see the module docs). Returns
/// whether the kernel agreed; when it did not, connections are timed as they are read.
pub fn stamp_listener<L: std::os::fd::AsFd>(listener: &L) -> bool {
    let ok = setsockopt(listener, ReceiveTimestampns, &true).is_ok();
    if !ok {
        REFUSED.store(true, Ordering::Relaxed);
    }
    ok
}

/// Older stamps than this are not trusted (see the module docs).
const MAX_AGE: Duration = Duration::from_secs(10);

/// Room for one `SCM_TIMESTAMPNS` control message (a `cmsghdr` and a `timespec`), with slack.
const CMSG_SPACE: usize = 64;

/// The largest single read (hyper offers its whole buffer; answers are mostly far smaller).
const READ_CHUNK: usize = 16 * 1024;

/// The realtime stamp (ns since the epoch) of the last segment read on one connection;
/// 0 = none yet. Shared between the connection's reader and the request's sender.
#[derive(Debug, Clone, Default)]
pub struct Arrival(Arc<AtomicU64>);

impl Arrival {
    /// Forgets the last stamp (before a request is sent, so a stale one is never used).
    pub fn clear(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    fn set(&self, ns: u64) {
        self.0.store(ns, Ordering::Relaxed);
    }

    /// When the last segment arrived, as an `Instant`, given `read_at` (the user-space time
    /// the answer was read, taken just before this call). `None` without a trustworthy stamp.
    pub fn instant(&self, read_at: Instant) -> Option<Instant> {
        let stamp = self.0.load(Ordering::Relaxed);
        if stamp == 0 {
            return None;
        }
        let now = u64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()?
                .as_nanos(),
        )
        .ok()?;
        let age = Duration::from_nanos(now.checked_sub(stamp)?);
        if age > MAX_AGE {
            return None;
        }
        read_at.checked_sub(age)
    }
}

/// A TCP stream whose reads record the kernel's receive timestamp into an [`Arrival`].
#[derive(Debug)]
pub struct StampedStream {
    inner: TcpStream,
    arrival: Arrival,
    /// Whether the kernel agreed to stamp (else reads are plain reads).
    stamping: bool,
    chunk: Box<[u8]>,
    cmsg: [u8; CMSG_SPACE],
}

impl StampedStream {
    /// Wraps `inner` and asks the kernel for receive timestamps; `stamping()` tells whether
    /// it agreed.
    pub fn new(inner: TcpStream, arrival: Arrival) -> StampedStream {
        let stamping = setsockopt(&inner, ReceiveTimestampns, &true).is_ok();
        if !stamping {
            REFUSED.store(true, Ordering::Relaxed);
        }
        StampedStream {
            inner,
            arrival,
            stamping,
            chunk: vec![0; READ_CHUNK].into_boxed_slice(),
            cmsg: [0; CMSG_SPACE],
        }
    }

    /// Wraps `inner` without asking for stamps: reads are plain reads.
    pub fn plain(inner: TcpStream) -> StampedStream {
        StampedStream {
            inner,
            arrival: Arrival::default(),
            stamping: false,
            chunk: Box::default(),
            cmsg: [0; CMSG_SPACE],
        }
    }

    /// Whether reads carry kernel timestamps.
    pub fn stamping(&self) -> bool {
        self.stamping
    }

    /// The wrapped stream (for socket options).
    pub fn get_ref(&self) -> &TcpStream {
        &self.inner
    }
}

/// One `recvmsg` into `chunk`: bytes read and the segment's realtime stamp (ns), if any.
fn recv_stamped(fd: RawFd, chunk: &mut [u8], cmsg: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    let mut iov = [io::IoSliceMut::new(chunk)];
    let msg =
        recvmsg::<()>(fd, &mut iov, Some(cmsg), MsgFlags::empty()).map_err(io::Error::from)?;
    let mut stamp = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmTimestampns(ts) = c {
                let ns = i128::from(ts.tv_sec()) * 1_000_000_000 + i128::from(ts.tv_nsec());
                stamp = u64::try_from(ns).ok().filter(|n| *n > 0);
            }
        }
    }
    Ok((msg.bytes, stamp))
}

impl AsyncRead for StampedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.stamping {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let max = buf.remaining().min(READ_CHUNK);
        if max == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(this.inner.poll_read_ready(cx))?;
            // `try_io` clears the readiness on `WouldBlock`, so the next poll waits again. A
            // short read (fewer bytes than asked) has drained the socket: like tokio's own
            // `TcpStream` reads, it clears the readiness too — by answering `WouldBlock` to
            // `try_io` with the bytes kept aside — which saves the `recvmsg` that would only
            // return `EAGAIN` (a syscall per answer). `try_io` clears only the readiness it
            // saw, so data arriving meanwhile is not missed.
            let fd = this.inner.as_raw_fd();
            let (chunk, cmsg) = (&mut this.chunk[..max], &mut this.cmsg[..]);
            let mut short = None;
            let result = this.inner.try_io(Interest::READABLE, || {
                let (n, stamp) = recv_stamped(fd, chunk, cmsg)?;
                if n > 0 && n < max {
                    short = Some((n, stamp));
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok((n, stamp))
            });
            let got = match (result, short) {
                (_, Some(got)) | (Ok(got), None) => got,
                (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => continue,
                (Err(e), None) => return Poll::Ready(Err(e)),
            };
            let (n, stamp) = got;
            buf.put_slice(&this.chunk[..n]);
            if let Some(ns) = stamp {
                this.arrival.set(ns);
            }
            return Poll::Ready(Ok(()));
        }
    }
}

impl AsyncWrite for StampedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn the_stamp_is_when_the_answer_arrived_not_when_it_was_read() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // Answer each two-byte ask with five bytes, as a gateway answers requests, until
            // the client hangs up.
            let mut ask = [0u8; 2];
            while std::io::Read::read_exact(&mut s, &mut ask).is_ok() {
                s.write_all(b"hello").unwrap();
            }
        });
        let arrival = Arrival::default();
        let mut s = StampedStream::new(TcpStream::connect(addr).await.unwrap(), arrival.clone());
        assert!(s.stamping(), "the kernel refused SO_TIMESTAMPNS");
        assert_eq!(
            arrival.instant(Instant::now()),
            None,
            "no stamp before a read"
        );
        let mut buf = [0u8; 5];
        // The kernel turns receive stamping on a moment after the first socket asks (a
        // deferred work item), so the first answers may carry no stamp: exchange until one
        // does (bounded; on the development box the first one already does).
        let mut tries = 0;
        loop {
            s.write_all(b"go").await.unwrap();
            s.read_exact(&mut buf).await.unwrap();
            if arrival.instant(Instant::now()).is_some() {
                break;
            }
            tries += 1;
            assert!(tries < 500, "no answer was kernel-stamped in 500 exchanges");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        arrival.clear();
        s.write_all(b"go").await.unwrap();
        // Block this (current-thread) runtime: the answer waits in the socket meanwhile.
        std::thread::sleep(Duration::from_millis(150));
        s.read_exact(&mut buf).await.unwrap();
        let read_at = Instant::now();
        assert_eq!(&buf, b"hello");
        let at = arrival
            .instant(read_at)
            .expect("a kernel stamp after a read");
        let waited = read_at - at;
        assert!(
            waited >= Duration::from_millis(75),
            "stamped {waited:?} before the read: the stamp should predate the 150 ms sleep"
        );
        drop(s);
        server.join().unwrap();
        arrival.clear();
        assert_eq!(arrival.instant(Instant::now()), None, "cleared");
    }

    #[test]
    fn an_implausible_stamp_is_not_trusted() {
        let a = Arrival::default();
        // 1 ns after the epoch: far older than MAX_AGE (a clock step), so not used.
        a.set(1);
        assert_eq!(a.instant(Instant::now()), None);
        // In the future (the clock stepped back): not used either.
        let future = SystemTime::now() + Duration::from_secs(60);
        a.set(u64::try_from(future.duration_since(UNIX_EPOCH).unwrap().as_nanos()).unwrap());
        assert_eq!(a.instant(Instant::now()), None);
    }
}

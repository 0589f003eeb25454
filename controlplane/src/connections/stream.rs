//! The byte stream hyper reads: the accepted TCP (or TLS) stream with the connection's head
//! deadline and idle timeout applied to its reads.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::tracker::{Tracker, Wait};

/// A connection's stream: reports what arrives to its [`Tracker`], and fails a read that is
/// still waiting when the running deadline passes, which makes hyper close the connection.
pub struct WatchedStream<S> {
    inner: S,
    tracker: Arc<Tracker>,
    /// Armed at the running deadline while a read waits.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> WatchedStream<S> {
    pub(crate) fn new(inner: S, tracker: Arc<Tracker>) -> Self {
        Self {
            inner,
            tracker,
            timer: None,
        }
    }

    /// Called when a read has nothing yet: `Ready(Err)` once the running deadline has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some((deadline, wait)) = self.tracker.deadline_or_park(cx.waker()) else {
            return Poll::Pending;
        };
        let timer = match &mut self.timer {
            Some(t) => {
                if t.deadline() != deadline {
                    t.as_mut().reset(deadline);
                }
                t
            }
            None => self
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.tracker.time_out(wait);
        let why = match wait {
            Wait::Head => "request head not complete before the deadline",
            Wait::Idle => "keep-alive connection idle too long",
        };
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WatchedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let (before, room) = (buf.filled().len(), buf.remaining() > 0);
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.tracker.bytes_arrived();
                } else if room {
                    this.tracker.client_gone();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                this.tracker.client_gone();
                Poll::Ready(Err(e))
            }
            Poll::Pending => this.poll_deadline(cx),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WatchedStream<S> {
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

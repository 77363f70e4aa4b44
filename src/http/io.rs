//! hyper's I/O traits over a futures-io stream (a plain TCP socket, a guarded server socket or a
//! TLS stream): the adapter both the server and the client hand to hyper's `http1`.
//!
//! futures-io reads into initialised memory while hyper offers its spare buffer capacity
//! uninitialised, so each read zeroes the part it offers first. A generic adapter zeroes all of
//! hyper's spare capacity on every attempt, the ones that end in `WouldBlock` included (1.3–1.5 %
//! of the executor's CPU in the Shannon max-rate profile, bench/RESULTS.md, also with a fixed
//! 16 KiB bound). This one offers a per-connection read size that starts at [`MIN_READ`],
//! doubles while reads fill it (large bodies) up to [`MAX_READ`] and falls back when they do not,
//! so a connection carrying small requests zeroes a few KiB per read.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use hyper::rt::ReadBufCursor;

/// Bytes the first read of a connection offers: a relay request or a small answer in one go.
const MIN_READ: usize = 4 * 1024;
/// Most bytes one read offers (a large body arrives in reads of this size).
const MAX_READ: usize = 64 * 1024;

/// A futures-io stream as hyper's `rt::Read + rt::Write`.
pub(crate) struct HyperIo<T> {
    stream: T,
    /// What the next read offers (module doc).
    read_size: usize,
}

impl<T> HyperIo<T> {
    pub(crate) fn new(stream: T) -> HyperIo<T> {
        HyperIo { stream, read_size: MIN_READ }
    }
}

impl<T: AsyncRead + Unpin> hyper::rt::Read for HyperIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, mut buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // SAFETY: the first `len` bytes of the spare capacity are zeroed before they are viewed as
        // `&mut [u8]`, and `advance` only counts bytes the read wrote into that slice.
        let (n, len) = unsafe {
            let spare = buf.as_mut();
            let len = spare.len().min(this.read_size);
            let start = spare.as_mut_ptr().cast::<u8>();
            start.write_bytes(0, len);
            let filled = std::slice::from_raw_parts_mut(start, len);
            (ready!(Pin::new(&mut this.stream).poll_read(cx, filled))?, len)
        };
        unsafe { buf.advance(n) };
        this.read_size = if n == len && len == this.read_size {
            (this.read_size * 2).min(MAX_READ)
        } else if n < this.read_size / 2 {
            (this.read_size / 2).max(MIN_READ)
        } else {
            this.read_size
        };
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> hyper::rt::Write for HyperIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Read;

    /// A body larger than the first read size arrives in growing reads (4, 8, 16, 32, 64, 64 KiB…)
    /// with every byte intact and in order; a short read halves the size again.
    #[test]
    fn read_size_grows_for_large_bodies_falls_back_and_loses_nothing() {
        let data: Vec<u8> = (0..(300 * 1024 + 123)).map(|i| (i % 251) as u8).collect();
        let mut io = HyperIo::new(futures_lite::io::Cursor::new(data.clone()));
        let waker = futures_lite::future::block_on(futures_lite::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())));
        let mut cx = Context::from_waker(&waker);
        let (mut out, mut reads) = (Vec::new(), Vec::new());
        loop {
            let mut storage = vec![std::mem::MaybeUninit::<u8>::uninit(); MAX_READ * 2];
            let mut rb = hyper::rt::ReadBuf::uninit(&mut storage);
            match Pin::new(&mut io).poll_read(&mut cx, rb.unfilled()) {
                Poll::Ready(Ok(())) => {}
                other => panic!("unexpected {other:?}"),
            }
            let filled = rb.filled();
            if filled.is_empty() {
                break;
            }
            reads.push(filled.len() / 1024);
            out.extend_from_slice(filled);
        }
        assert_eq!(out, data);
        assert_eq!(reads, vec![4, 8, 16, 32, 64, 64, 64, 48]);
        // The end of the stream (a read of 0 bytes) halved the size.
        assert_eq!(io.read_size, MAX_READ / 2);
    }
}

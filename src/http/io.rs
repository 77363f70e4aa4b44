//! hyper's I/O traits over a futures-io stream (a plain TCP socket, a guarded server socket or a
//! TLS stream): the adapter both the server and the client hand to hyper's `http1`.
//!
//! futures-io reads into initialised memory while hyper offers its spare buffer capacity
//! uninitialised, so each read zeroes the part it offers first. A generic adapter zeroes all of
//! hyper's spare capacity on every attempt, the ones that end in `WouldBlock` included; this one
//! offers at most [`READ_CHUNK`] bytes per read, which bounds that memset (it was ~1.3 % of the
//! executor's CPU in the Shannon max-rate profile, bench/RESULTS.md) at the price of one more
//! `recv` per 16 KiB of a large body.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use hyper::rt::ReadBufCursor;

/// Most bytes one read offers: a relay request or a typical chain answer in one go.
const READ_CHUNK: usize = 16 * 1024;

/// A futures-io stream as hyper's `rt::Read + rt::Write`.
pub(crate) struct HyperIo<T>(T);

impl<T> HyperIo<T> {
    pub(crate) fn new(stream: T) -> HyperIo<T> {
        HyperIo(stream)
    }
}

impl<T: AsyncRead + Unpin> hyper::rt::Read for HyperIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, mut buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        // SAFETY: the first `len` bytes of the spare capacity are zeroed before they are viewed as
        // `&mut [u8]`, and `advance` only counts bytes the read wrote into that slice.
        let n = unsafe {
            let spare = buf.as_mut();
            let len = spare.len().min(READ_CHUNK);
            let start = spare.as_mut_ptr().cast::<u8>();
            start.write_bytes(0, len);
            let filled = std::slice::from_raw_parts_mut(start, len);
            ready!(Pin::new(&mut self.0).poll_read(cx, filled))?
        };
        unsafe { buf.advance(n) };
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> hyper::rt::Write for HyperIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Read;

    /// A read larger than the chunk arrives in chunk-sized pieces, every byte intact and in order.
    #[test]
    fn reads_are_bounded_by_the_chunk_and_lose_nothing() {
        let data: Vec<u8> = (0..(READ_CHUNK * 2 + 123)).map(|i| (i % 251) as u8).collect();
        let mut io = HyperIo::new(futures_lite::io::Cursor::new(data.clone()));
        let mut out = Vec::new();
        let waker = futures_lite::future::block_on(futures_lite::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())));
        let mut cx = Context::from_waker(&waker);
        let mut reads = Vec::new();
        loop {
            let mut storage = vec![std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK * 4];
            let mut rb = hyper::rt::ReadBuf::uninit(&mut storage);
            match Pin::new(&mut io).poll_read(&mut cx, rb.unfilled()) {
                Poll::Ready(Ok(())) => {}
                other => panic!("unexpected {other:?}"),
            }
            let filled = rb.filled();
            if filled.is_empty() {
                break;
            }
            reads.push(filled.len());
            out.extend_from_slice(filled);
        }
        assert_eq!(out, data);
        assert_eq!(reads, vec![READ_CHUNK, READ_CHUNK, 123]);
    }
}

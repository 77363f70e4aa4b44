//! HTTP on the executor: one server for every listener ([`server`]) and one keep-alive client
//! for every outbound call ([`client`]), both hyper `http1` over async-io on the single
//! `LocalExecutor` thread; the relay listener's [`router`] and the answer shapes ([`reply`]);
//! their per-request timeouts share one coarse timer ([`deadline`]); [`io`] adapts the sockets to
//! hyper.

pub mod client;
pub(crate) mod deadline;
pub(crate) mod io;
pub mod reply;
pub mod router;
pub mod server;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Run `futures` concurrently on the current task and collect their outputs in order: several
/// outbound calls at once (a node's URLs checked together) without a task or thread each.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    futures_lite::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future completed")).collect()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    #[test]
    fn join_all_runs_concurrently_and_keeps_order() {
        let started = Instant::now();
        let delays = [300u64, 100, 200];
        let futures: Vec<_> = delays
            .iter()
            .map(|&ms| async move {
                async_io::Timer::after(Duration::from_millis(ms)).await;
                ms
            })
            .collect();
        let out = smol::block_on(super::join_all(futures));
        assert_eq!(out, delays);
        assert!(started.elapsed() < Duration::from_millis(550), "ran one after another: {:?}", started.elapsed());
    }
}

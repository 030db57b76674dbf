//! Run jobs on a few threads and never wait for one of them forever.
//!
//! The per-guest budget (`--time-limit`) is checked before each read, so it stops an inspection
//! that is slow but still answering. It cannot stop a read that never returns: a disk image on a
//! hung NFS mount or a dead multipath device blocks its thread inside the kernel. [`run_watched`]
//! gives each job a deadline counted from the moment it starts; a job past it is reported as
//! stuck and its thread is left behind (it ends with the process), and the remaining jobs go on
//! in a fresh thread, so one hung image cannot stop a scan of the host.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Why a job has no result of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The job panicked (a bug).
    Panicked,
    /// The job had not returned `patience` after it started; its thread was left behind.
    Stuck(Duration),
}

enum Message<V> {
    Started(usize, Instant),
    Done(usize, Result<V, ()>),
}

/// Run `work` over every item, at most `parallel` at a time, and return the results in the
/// items' order. A job that panics gets `failed(item, Failure::Panicked)`; one that has not
/// returned `patience` after it started gets `failed(item, Failure::Stuck(patience))` and the
/// others continue without it.
pub fn run_watched<T, V, W, F>(
    items: Vec<T>,
    parallel: usize,
    patience: Duration,
    work: W,
    failed: F,
) -> Vec<V>
where
    T: Send + Sync + 'static,
    V: Send + 'static,
    W: Fn(&T) -> V + Send + Sync + 'static,
    F: Fn(&T, Failure) -> V,
{
    let count = items.len();
    let items = Arc::new(items);
    let work = Arc::new(work);
    let next = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<Message<V>>();
    let spawn = || {
        let (items, work, next, tx) = (items.clone(), work.clone(), next.clone(), tx.clone());
        std::thread::spawn(move || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            if tx.send(Message::Started(i, Instant::now())).is_err() {
                break;
            }
            let result = catch_unwind(AssertUnwindSafe(|| work(item))).map_err(|_| ());
            if tx.send(Message::Done(i, result)).is_err() {
                break;
            }
        })
    };
    for _ in 0..parallel.clamp(1, count.max(1)) {
        spawn();
    }
    let mut results: Vec<Option<V>> = (0..count).map(|_| None).collect();
    let mut running: Vec<(usize, Instant)> = Vec::new();
    let mut left = count;
    while left > 0 {
        let now = Instant::now();
        let wait = running
            .iter()
            .map(|&(_, started)| (started + patience).saturating_duration_since(now))
            .min()
            .unwrap_or(patience);
        match rx.recv_timeout(wait) {
            Ok(Message::Started(i, at)) => running.push((i, at)),
            Ok(Message::Done(i, result)) => {
                running.retain(|&(j, _)| j != i);
                if let Some(slot @ None) = results.get_mut(i) {
                    *slot = Some(match result {
                        Ok(v) => v,
                        Err(()) => failed(&items[i], Failure::Panicked),
                    });
                    left -= 1;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Every worker is gone with jobs unanswered: cannot happen (a worker only stops when
            // the queue is empty or this loop is gone), but never wait forever on it.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        let (stuck, still): (Vec<_>, Vec<_>) = running
            .iter()
            .partition(|&&(_, started)| now.duration_since(started) >= patience);
        running = still;
        for (i, _) in stuck {
            if let Some(slot @ None) = results.get_mut(i) {
                *slot = Some(failed(&items[i], Failure::Stuck(patience)));
                left -= 1;
            }
            // The stuck job keeps its thread; the queue gets a new one.
            spawn();
        }
    }
    results
        .into_iter()
        .enumerate()
        .map(|(i, v)| v.unwrap_or_else(|| failed(&items[i], Failure::Stuck(patience))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job that never returns and one that panics get their failure; every other job its own
    /// result, in order, with one worker and with several.
    ///
    /// The patience is generous: a panic with `RUST_BACKTRACE` set symbolises a backtrace, which
    /// took more than 300 ms on a loaded 2-core machine and made the panicking job "stuck".
    #[test]
    fn a_stuck_job_does_not_stop_the_others() {
        for parallel in [1, 2, 8] {
            let items: Vec<u32> = (0..8).collect();
            let out = run_watched(
                items,
                parallel,
                Duration::from_secs(2),
                |&i| match i {
                    2 => loop {
                        std::thread::park();
                    },
                    5 => panic!("job 5 fails"),
                    _ => format!("ok {i}"),
                },
                |&i, why| format!("{i}: {why:?}"),
            );
            let want: Vec<String> = (0..8)
                .map(|i| match i {
                    2 => "2: Stuck(2s)".to_string(),
                    5 => "5: Panicked".to_string(),
                    _ => format!("ok {i}"),
                })
                .collect();
            assert_eq!(out, want, "parallel {parallel}");
        }
    }

    #[test]
    fn no_items_no_threads() {
        let out: Vec<u8> = run_watched(
            Vec::<u8>::new(),
            4,
            Duration::from_secs(1),
            |&b| b,
            |&b, _| b,
        );
        assert!(out.is_empty());
    }

    /// Slow jobs within their patience are waited for, however long the whole run takes.
    #[test]
    fn patience_counts_from_each_jobs_start() {
        let out = run_watched(
            (0..4).collect::<Vec<u64>>(),
            1,
            Duration::from_millis(400),
            |&i| {
                std::thread::sleep(Duration::from_millis(150));
                i
            },
            |_, _| u64::MAX,
        );
        assert_eq!(out, vec![0, 1, 2, 3]);
    }
}

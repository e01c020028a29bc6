//! Group commit without a writer thread.
//!
//! Callers [`GroupCommit::append`] items to a queue and get a [`Ticket`]; [`GroupCommit::wait`]
//! resolves once the item is written. A waiter first lets the other tasks already runnable on its
//! worker run (so that those heading for a wait queue their items too); then, if it finds nobody
//! writing, it becomes the writer: it takes everything queued (its own items and everyone
//! else's), hands it to the [`Sink`] in one call on its own task, and keeps going while more is
//! queued. Apart from its own yield, each waiter is woken exactly once, when the group holding
//! its item is written.
//!
//! Why not a writer thread: with one, every group costs a wake-up of that thread and a wake-up of
//! each waiting task from it; at tens of thousands of small appends per second on two cores those
//! context switches cost more than the writes (measured: ~19 % of the server's CPU for the two
//! journals it had). A `write(2)` of a few kilobytes to the page cache takes microseconds, so doing
//! it on the async worker that needs it is cheaper than handing it off.
//!
//! Items nobody waits for are written by a background task ([`GroupCommit::kick`]), or with the
//! next group, whichever comes first.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo, clippy::unimplemented)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::task::{Context, Poll};

use tokio::sync::{Notify, oneshot};

/// Where groups go.
pub trait Sink: Send + 'static {
    type Item: Send + 'static;
    /// Writes one group (every item queued since the previous call, in append order). Called by
    /// one caller at a time. An error fails every item of the group.
    fn write(&mut self, items: Vec<Self::Item>) -> Result<(), String>;
}

/// Redeemed with [`GroupCommit::wait`] once the item is written.
pub struct Ticket(oneshot::Receiver<Result<(), String>>);

type Done = oneshot::Sender<Result<(), String>>;

pub struct GroupCommit<S: Sink> {
    /// Items in append order, each with the sender that tells its waiter.
    queue: Mutex<Vec<(S::Item, Option<Done>)>>,
    /// Held while groups are written; `try_lock` decides who writes.
    sink: Mutex<S>,
    /// Wakes the background writer for items nobody waits for (shared with it, so that it does
    /// not keep the group alive while it sleeps).
    kick: Arc<Notify>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind (a queue, the sink's file
    // handle): carrying on is safe.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S: Sink> GroupCommit<S> {
    /// Starts the background writer for unawaited items on the current tokio runtime.
    pub fn start(sink: S) -> Arc<GroupCommit<S>> {
        let group = Arc::new(GroupCommit {
            queue: Mutex::new(Vec::new()),
            sink: Mutex::new(sink),
            kick: Arc::new(Notify::new()),
        });
        let weak = Arc::downgrade(&group);
        let kick = group.kick.clone();
        tokio::spawn(async move {
            loop {
                kick.notified().await;
                // Gone: nothing left to write for.
                let Some(group) = weak.upgrade() else { return };
                group.lead();
            }
        });
        group
    }

    /// Queues an item to be waited for with [`GroupCommit::wait`].
    pub fn append(&self, item: S::Item) -> Ticket {
        let (done, rx) = oneshot::channel();
        lock(&self.queue).push((item, Some(done)));
        Ticket(rx)
    }

    /// Queues an item nobody will wait for; the background task writes it soon.
    pub fn append_unawaited(&self, item: S::Item) {
        lock(&self.queue).push((item, None));
        self.kick();
    }

    /// Has the background task write what is queued soon.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Resolves once the ticket's item went through the sink: `Err` with the sink's error if its
    /// group failed.
    pub async fn wait(&self, ticket: Ticket) -> Result<(), String> {
        // Let the tasks already runnable on this worker run first: those on their way to a wait
        // of their own queue their items meanwhile, and the write below takes them all. Leading
        // at once wrote a group of one or two items per `write(2)` at saturation (two workers,
        // dozens of connections), one system call per token and journal.
        YieldOnce(false).await;
        // Either this call writes the item, or whoever holds the sink sees it when it re-checks
        // the queue after letting go (see `lead`).
        self.lead();
        ticket.0.await.unwrap_or_else(|_| Err("the group writer stopped".into()))
    }

    /// Writes groups until the queue is empty, unless somebody else is writing.
    fn lead(&self) {
        loop {
            let mut sink = match self.sink.try_lock() {
                Ok(sink) => sink,
                // A sink that panicked mid-write is still the only way out for the waiters:
                // giving up here would leave every later waiter hanging.
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            loop {
                let queued = std::mem::take(&mut *lock(&self.queue));
                if queued.is_empty() {
                    break;
                }
                let (items, dones): (Vec<_>, Vec<_>) = queued.into_iter().unzip();
                let result = sink.write(items);
                for done in dones.into_iter().flatten() {
                    let _ = done.send(result.clone());
                }
            }
            drop(sink);
            // An item queued after the last look, whose waiter found the sink still held, is
            // ours to write: look once more now that the sink is free.
            if lock(&self.queue).is_empty() {
                return;
            }
        }
    }
}

/// Pending once, waking itself: the task goes to the back of its worker's run queue (tokio's
/// `yield_now` instead waits for the next I/O poll, which lets new requests in ahead of it and
/// delays the write by a whole scheduler round at saturation).
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    type Groups = Arc<Mutex<Vec<Vec<u32>>>>;

    /// Records groups; fails while `fail` is set.
    struct Recorder {
        groups: Groups,
        fail: Arc<AtomicBool>,
    }

    impl Sink for Recorder {
        type Item = u32;
        fn write(&mut self, items: Vec<u32>) -> Result<(), String> {
            // Long enough for other tasks to queue behind the writer.
            std::thread::sleep(std::time::Duration::from_micros(200));
            if self.fail.load(Ordering::SeqCst) {
                return Err("disk full".into());
            }
            self.groups.lock().unwrap().push(items);
            Ok(())
        }
    }

    fn recorder() -> (Recorder, Groups, Arc<AtomicBool>) {
        let groups = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(AtomicBool::new(false));
        (Recorder { groups: groups.clone(), fail: fail.clone() }, groups, fail)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_item_is_written_once_in_order_and_groups_form_under_load() {
        let (sink, groups, _) = recorder();
        let group = GroupCommit::start(sink);
        let order = Arc::new(Mutex::new(0u32));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (group, order) = (group.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..50 {
                    // Values are handed out under the same lock as the append, so append order is
                    // value order.
                    let ticket = {
                        let mut next = order.lock().unwrap();
                        *next += 1;
                        group.append(*next)
                    };
                    group.wait(ticket).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let groups = groups.lock().unwrap();
        let all: Vec<u32> = groups.iter().flatten().copied().collect();
        assert_eq!(all, (1..=1600).collect::<Vec<_>>(), "each item once, in append order");
        assert!(groups.len() < 1600, "concurrent appends share groups ({} groups)", groups.len());
    }

    /// Tasks that are runnable together on one worker (requests that arrived in one poll of the
    /// sockets) share a write, instead of the first writing alone.
    #[tokio::test(flavor = "current_thread")]
    async fn waiters_runnable_together_share_one_write() {
        let (sink, groups, _) = recorder();
        let group = GroupCommit::start(sink);
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let group = group.clone();
                tokio::spawn(async move {
                    let ticket = group.append(i);
                    group.wait(ticket).await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), Ok(()));
        }
        assert_eq!(*groups.lock().unwrap(), vec![(0..8).collect::<Vec<_>>()]);
    }

    #[tokio::test]
    async fn unawaited_items_are_written_by_the_background_task() {
        let (sink, groups, _) = recorder();
        let group = GroupCommit::start(sink);
        group.append_unawaited(7);
        group.append_unawaited(8);
        for _ in 0..200 {
            if groups.lock().unwrap().concat() == vec![7, 8] {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("not written: {:?}", groups.lock().unwrap());
    }

    /// Panics on its first group, then records.
    struct PanicsOnce {
        panicked: bool,
        groups: Groups,
    }

    impl Sink for PanicsOnce {
        type Item = u32;
        fn write(&mut self, items: Vec<u32>) -> Result<(), String> {
            if !std::mem::replace(&mut self.panicked, true) {
                panic!("sink bug");
            }
            self.groups.lock().unwrap().push(items);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_sink_that_panicked_once_still_writes_later_groups() {
        let groups: Groups = Arc::default();
        let group = GroupCommit::start(PanicsOnce { panicked: false, groups: groups.clone() });
        let first = group.append(1);
        let writer = group.clone();
        // The waiter that writes the first group panics with the sink (its task fails).
        assert!(tokio::spawn(async move { writer.wait(first).await }).await.is_err());
        let second = group.append(2);
        let waited = tokio::time::timeout(std::time::Duration::from_secs(5), group.wait(second)).await;
        assert_eq!(waited, Ok(Ok(())), "a later waiter must not hang on the poisoned sink");
        assert_eq!(groups.lock().unwrap().concat(), vec![2]);
    }

    #[tokio::test]
    async fn a_failed_group_fails_its_waiters_only() {
        let (sink, groups, fail) = recorder();
        let group = GroupCommit::start(sink);
        fail.store(true, Ordering::SeqCst);
        let a = group.append(1);
        let b = group.append(2);
        assert_eq!(group.wait(a).await, Err("disk full".into()));
        assert_eq!(group.wait(b).await, Err("disk full".into()), "same group");
        fail.store(false, Ordering::SeqCst);
        let c = group.append(3);
        assert_eq!(group.wait(c).await, Ok(()));
        assert_eq!(groups.lock().unwrap().concat(), vec![3]);
    }
}

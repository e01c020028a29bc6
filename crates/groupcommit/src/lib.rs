//! Group commit without a writer thread.
//!
//! Callers [`GroupCommit::append`] items to a queue and get a [`Ticket`]; [`GroupCommit::wait`]
//! resolves once the item is written. Whoever waits first and finds nobody writing becomes the
//! writer: it takes everything queued (its own items and everyone else's) and hands it to the
//! [`Sink`] in one call, on its own task. Everyone whose items were in that group is then done
//! without ever having been handed to another thread.
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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// Where groups go.
pub trait Sink: Send + 'static {
    type Item: Send + 'static;
    /// Writes one group (every item queued since the previous call, in append order). Called by
    /// one caller at a time. An error fails every item of the group.
    fn write(&mut self, items: Vec<Self::Item>) -> Result<(), String>;
}

/// Identifies an appended item (its position in append order, from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// Failed groups remembered for their waiters (a failure is rare; this bounds the memory).
const FAILURES_KEPT: usize = 1024;

pub struct GroupCommit<S: Sink> {
    queue: Mutex<Queue<S::Item>>,
    /// Held while a group is written; `try_lock` decides who writes.
    sink: Mutex<S>,
    /// Every ticket up to this one has been through the sink.
    written: AtomicU64,
    /// Ticket ranges (inclusive) whose group failed, newest last.
    failures: Mutex<VecDeque<(u64, u64, String)>>,
    /// Signalled after every group.
    done: Notify,
    /// Wakes the background writer for items nobody waits for (shared with it, so that it does
    /// not keep the group alive while it sleeps).
    kick: Arc<Notify>,
}

struct Queue<I> {
    items: Vec<I>,
    appended: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind (a queue, a counter, the
    // sink's file handle): carrying on is safe.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S: Sink> GroupCommit<S> {
    /// Starts the background writer for unawaited items on the current tokio runtime.
    pub fn start(sink: S) -> Arc<GroupCommit<S>> {
        let group = Arc::new(GroupCommit {
            queue: Mutex::new(Queue { items: Vec::new(), appended: 0 }),
            sink: Mutex::new(sink),
            written: AtomicU64::new(0),
            failures: Mutex::new(VecDeque::new()),
            done: Notify::new(),
            kick: Arc::new(Notify::new()),
        });
        let weak = Arc::downgrade(&group);
        let kick = group.kick.clone();
        tokio::spawn(async move {
            loop {
                kick.notified().await;
                // Gone: nothing left to write for.
                let Some(group) = weak.upgrade() else { return };
                group.write_all_queued();
            }
        });
        group
    }

    /// Queues an item. Call [`GroupCommit::wait`] with the ticket to know it is written, or
    /// [`GroupCommit::kick`] if nobody will wait.
    pub fn append(&self, item: S::Item) -> Ticket {
        let mut queue = lock(&self.queue);
        queue.items.push(item);
        queue.appended += 1;
        Ticket(queue.appended)
    }

    /// The ticket of the newest item appended so far (`wait` on it waits for everything before).
    pub fn last_ticket(&self) -> Ticket {
        Ticket(lock(&self.queue).appended)
    }

    /// Has the background task write what is queued soon.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Resolves once the ticket's item went through the sink: `Err` with the sink's error if its
    /// group failed.
    pub async fn wait(&self, ticket: Ticket) -> Result<(), String> {
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            // Registered before the checks below, so a group finishing in between still wakes us.
            done.as_mut().enable();
            if self.written.load(Ordering::Acquire) >= ticket.0 {
                return self.outcome(ticket);
            }
            if let Ok(sink) = self.sink.try_lock() {
                self.write_group(sink);
                continue;
            }
            done.await;
        }
    }

    /// Writes until the queue is empty (the background task's job).
    fn write_all_queued(&self) {
        loop {
            let sink = lock(&self.sink);
            if lock(&self.queue).items.is_empty() {
                return;
            }
            self.write_group(sink);
        }
    }

    /// Takes everything queued and writes it. The sink lock is released before waiters are
    /// woken, so that one of them can write the next group at once.
    fn write_group(&self, mut sink: MutexGuard<'_, S>) {
        let (items, upto) = {
            let mut queue = lock(&self.queue);
            (std::mem::take(&mut queue.items), queue.appended)
        };
        let from = self.written.load(Ordering::Acquire) + 1;
        if !items.is_empty()
            && let Err(e) = sink.write(items)
        {
            let mut failures = lock(&self.failures);
            if failures.len() == FAILURES_KEPT {
                failures.pop_front();
            }
            failures.push_back((from, upto, e));
        }
        self.written.store(upto, Ordering::Release);
        drop(sink);
        self.done.notify_waiters();
    }

    fn outcome(&self, ticket: Ticket) -> Result<(), String> {
        let failures = lock(&self.failures);
        match failures.iter().rev().find(|(from, to, _)| (*from..=*to).contains(&ticket.0)) {
            Some((_, _, e)) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

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
                    assert!(group.written.load(Ordering::SeqCst) >= ticket.0);
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

    #[tokio::test]
    async fn unawaited_items_are_written_by_the_background_task() {
        let (sink, groups, _) = recorder();
        let group = GroupCommit::start(sink);
        group.append(7);
        group.append(8);
        group.kick();
        for _ in 0..200 {
            if groups.lock().unwrap().concat() == vec![7, 8] {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("not written: {:?}", groups.lock().unwrap());
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
        assert_eq!(group.wait(a).await, Err("disk full".into()), "the outcome is remembered");
        assert_eq!(groups.lock().unwrap().concat(), vec![3]);
        assert_eq!(group.last_ticket(), c);
    }
}

//! The bounded way into a sink task.
//!
//! A notice travels through a bounded channel. When the channel is full the sender neither waits
//! (the evaluation loop must never hang on a wedged sink) nor drops it: the sink's [`Overflow`]
//! policy keeps it, the task is woken, and counts and logs say so. Once anything overflowed,
//! later notices go the same way until the task has taken them over, so order is kept: the task
//! always gets what was in the channel before what overflowed.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, Notify};

/// How many notices wait in a sink's channel before its overflow policy takes over.
pub const CAPACITY: usize = 1024;

/// What a sink does with a notice that found its channel full.
pub trait Overflow<T>: Default + Send {
    /// Keeps `item`, which found the channel full or other items already kept here.
    fn keep(&mut self, item: T);
}

/// Both ends see this.
#[derive(Debug)]
struct Shared<O> {
    sink: String,
    /// `Some` while notices are overflowing: what the policy kept of them.
    overflow: Mutex<Option<O>>,
    /// Wakes the task when something overflowed.
    wake: Notify,
    /// `freshwatch_sink_queue_overflows_total{sink}`.
    overflows: Counter,
}

impl<O> Shared<O> {
    fn lock(&self) -> MutexGuard<'_, Option<O>> {
        // Nothing here can be left half-updated by a panic: the data is still sound.
        self.overflow.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending end; cheap to clone.
#[derive(Debug)]
pub struct InboxSender<T, O> {
    sender: mpsc::Sender<T>,
    shared: Arc<Shared<O>>,
}

impl<T, O> Clone for InboxSender<T, O> {
    fn clone(&self) -> Self {
        InboxSender {
            sender: self.sender.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// Where a sent notice went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Queued,
    /// Kept by the overflow policy.
    Overflowed,
    /// The task is gone (shutdown).
    Closed,
}

impl<T, O: Overflow<T>> InboxSender<T, O> {
    /// Never waits.
    pub fn send(&self, item: T) -> Sent {
        let mut overflow = self.shared.lock();
        let item = match overflow.as_mut() {
            Some(kept) => {
                kept.keep(item);
                None
            }
            None => match self.sender.try_send(item) {
                Ok(()) => return Sent::Queued,
                Err(TrySendError::Closed(_)) => return Sent::Closed,
                Err(TrySendError::Full(item)) => Some(item),
            },
        };
        if let Some(item) = item {
            tracing::warn!(sink = %self.shared.sink, capacity = self.sender.max_capacity(), "sink queue full: notices overflow until the sink task catches up");
            overflow.get_or_insert_with(O::default).keep(item);
        }
        drop(overflow);
        self.shared.overflows.inc();
        self.shared.wake.notify_one();
        Sent::Overflowed
    }
}

/// The receiving end, owned by the sink's supervisor so it outlives a crashed task.
#[derive(Debug)]
pub struct Inbox<T, O> {
    receiver: mpsc::Receiver<T>,
    shared: Arc<Shared<O>>,
}

/// What the task gets next.
#[derive(Debug)]
pub enum Received<T, O> {
    Item(T),
    /// Everything that overflowed, behind what was still in the channel.
    Overflow(Vec<T>, O),
    /// Every sender is gone.
    Closed,
}

/// A bounded inbox for `sink`; overflows are counted in `overflows`.
pub fn channel<T, O>(
    sink: &str,
    capacity: usize,
    overflows: Counter,
) -> (InboxSender<T, O>, Inbox<T, O>) {
    let (sender, receiver) = mpsc::channel(capacity);
    let shared = Arc::new(Shared {
        sink: sink.to_owned(),
        overflow: Mutex::new(None),
        wake: Notify::new(),
        overflows,
    });
    (
        InboxSender {
            sender,
            shared: shared.clone(),
        },
        Inbox { receiver, shared },
    )
}

impl<T, O> Inbox<T, O> {
    /// The next notice, or all that overflowed. Cancel-safe.
    pub async fn recv(&mut self) -> Received<T, O> {
        loop {
            tokio::select! {
                biased;
                // What was queued first comes first.
                item = self.receiver.recv() => return match item {
                    Some(item) => Received::Item(item),
                    None => match self.take_all() {
                        (items, Some(overflow)) => Received::Overflow(items, overflow),
                        (_, None) => Received::Closed,
                    },
                },
                // Something overflowed (a stale wake-up finds nothing and waits on).
                _ = self.shared.wake.notified() => {
                    if let (items, Some(overflow)) = self.take_all() {
                        return Received::Overflow(items, overflow);
                    }
                }
            }
        }
    }

    /// At shutdown, or on a wake-up: what the channel holds, then what overflowed. Senders wait
    /// on the lock meanwhile, so nothing slips into the channel between the two.
    pub fn take_all(&mut self) -> (Vec<T>, Option<O>) {
        let mut overflow = self.shared.lock();
        let mut items = Vec::new();
        while let Ok(item) = self.receiver.try_recv() {
            items.push(item);
        }
        (items, overflow.take())
    }

    #[cfg(test)]
    pub fn try_recv(&mut self) -> Result<T, mpsc::error::TryRecvError> {
        self.receiver.try_recv()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq)]
    struct Kept(Vec<u32>);

    impl Overflow<u32> for Kept {
        fn keep(&mut self, item: u32) {
            self.0.push(item);
        }
    }

    #[tokio::test]
    async fn a_full_channel_never_blocks_and_keeps_order_until_the_task_catches_up() {
        let overflows = Counter::default();
        let (sender, mut inbox) = channel::<u32, Kept>("hook", 2, overflows.clone());
        assert_eq!(sender.send(1), Sent::Queued);
        assert_eq!(sender.send(2), Sent::Queued);
        assert_eq!(sender.send(3), Sent::Overflowed);
        assert!(matches!(inbox.recv().await, Received::Item(1)));
        assert_eq!(
            sender.send(4),
            Sent::Overflowed,
            "room in the channel, yet 4 must not overtake 3"
        );
        assert!(matches!(inbox.recv().await, Received::Item(2)));
        let Received::Overflow(items, kept) = inbox.recv().await else {
            panic!("the overflow comes next");
        };
        assert_eq!((items, kept), (vec![], Kept(vec![3, 4])));
        assert_eq!(sender.send(5), Sent::Queued, "caught up: the channel again");
        assert_eq!(sender.send(6), Sent::Queued);
        assert_eq!(sender.send(7), Sent::Overflowed);
        let (items, kept) = inbox.take_all();
        assert_eq!(
            (items, kept),
            (vec![5, 6], Some(Kept(vec![7]))),
            "at shutdown: the channel, then the overflow"
        );
        assert_eq!(overflows.get(), 3);
    }
}

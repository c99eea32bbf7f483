//! The heavy reads' two guards: at most `http.max_concurrent_reads` of them at once
//! ([`ReadGate`]), and a body that streams ([`stream`]) so a whole-table read holds one chunk of
//! its output, not all of it.
//!
//! A read over the gate waits for a turn rather than getting a 503: a waiting request costs a
//! few hundred bytes, and a Prometheus scrape refused with 503 would be a gap on every
//! dashboard. The memory a read takes is what bounds the process, and that is what the gate
//! counts: at most this many reads build their output at once.

use std::num::NonZeroUsize;
use std::sync::Arc;

use axum::body::Body;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Bytes of output gathered before they are handed to the client.
pub const STREAM_CHUNK_BYTES: usize = 64 * 1024;

/// Chunks produced ahead of the client: with [`STREAM_CHUNK_BYTES`], what a slow client makes
/// a read hold.
const STREAM_DEPTH: usize = 2;

/// Turns for heavy reads.
#[derive(Debug, Clone)]
pub struct ReadGate {
    turns: Arc<Semaphore>,
}

/// A heavy read's turn; held until its response is written in full.
#[derive(Debug)]
pub struct ReadTurn {
    _permit: OwnedSemaphorePermit,
}

impl ReadGate {
    pub fn new(max_concurrent_reads: NonZeroUsize) -> ReadGate {
        ReadGate {
            turns: Arc::new(Semaphore::new(max_concurrent_reads.get())),
        }
    }

    /// Waits for a turn.
    pub async fn enter(&self) -> ReadTurn {
        let permit = self
            .turns
            .clone()
            .acquire_owned()
            .await
            .expect("the read gate is never closed");
        ReadTurn { _permit: permit }
    }

    /// Turns free now (for tests and the status of the gate).
    pub fn available(&self) -> usize {
        self.turns.available_permits()
    }
}

/// Where a streamed body is written: text gathered into chunks of [`STREAM_CHUNK_BYTES`], each
/// handed to the client as it fills, waiting while [`STREAM_DEPTH`] chunks are not yet taken.
/// A write fails once the client went away, which stops the producer.
#[derive(Debug)]
pub struct ChunkWriter {
    buffer: String,
    sender: mpsc::Sender<Result<String, std::io::Error>>,
}

impl ChunkWriter {
    fn flush(&mut self) -> std::fmt::Result {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, String::with_capacity(STREAM_CHUNK_BYTES));
        self.sender
            .blocking_send(Ok(chunk))
            .map_err(|_| std::fmt::Error)
    }
}

impl std::fmt::Write for ChunkWriter {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.buffer.push_str(text);
        if self.buffer.len() >= STREAM_CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }
}

/// A body written by `produce` on a blocking thread as the client reads it. `turn` is held
/// until `produce` returns.
pub fn stream(turn: ReadTurn, produce: impl FnOnce(&mut ChunkWriter) + Send + 'static) -> Body {
    let (sender, receiver) = mpsc::channel(STREAM_DEPTH);
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let mut writer = ChunkWriter {
            buffer: String::with_capacity(STREAM_CHUNK_BYTES),
            sender,
        };
        produce(&mut writer);
        // A client that went away is not an error here.
        let _ = writer.flush();
    });
    Body::from_stream(futures_util::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.recv().await.map(|chunk| (chunk, receiver)) },
    ))
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A streamed body is produced as it is read: with the client not reading, the producer
    /// has written at most a few chunks, not the whole body; read in full, it is all there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_streamed_body_is_produced_as_it_is_read() {
        let gate = ReadGate::new(NonZeroUsize::new(1).unwrap());
        let written = Arc::new(AtomicUsize::new(0));
        let line = "x".repeat(99) + "\n";
        let lines = 100_000; // 10 MB
        let body = {
            let written = written.clone();
            let line = line.clone();
            stream(gate.enter().await, move |out| {
                for _ in 0..lines {
                    if out.write_str(&line).is_err() {
                        return;
                    }
                    written.fetch_add(line.len(), Ordering::Relaxed);
                }
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let ahead = written.load(Ordering::Relaxed);
        assert!(
            ahead <= (STREAM_DEPTH + 2) * STREAM_CHUNK_BYTES,
            "{ahead} bytes produced before the client read any"
        );
        assert_eq!(
            gate.available(),
            0,
            "the turn is held while the body streams"
        );
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        assert_eq!(bytes.len(), lines * line.len());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(gate.available(), 1, "the turn is given back at the end");
    }
}

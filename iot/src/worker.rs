//! The model's own thread: one [`Assistant`], one request at a time, fed by
//! a bounded queue.
//!
//! Generation is CPU-bound and the engine is not `Sync`, so it never runs on
//! the async runtime: front ends [`submit`](WorkerHandle::submit) an [`Ask`]
//! and read its pieces from a [`JobStream`] (async or blocking). A full
//! queue is refused at once ([`Busy`]) so a front end can answer "busy"
//! instead of piling up work a Pi cannot catch up with. Dropping a
//! [`JobStream`] cancels its request (within one token if it is running, or
//! before it starts if it is still queued).
//!
//! The worker also publishes what it is doing as a [`Status`] (for the status
//! LED): thinking from the start of a request, speaking from its first answer
//! piece, idle after, error when a request failed.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, watch};

use crate::assistant::{Ask, AssistError, Assistant, Outcome, Piece, Reply};
use crate::gpio::Status;

/// What a running request sends back.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// A piece of the reply.
    Piece(Piece),
    /// The end: the outcome or the error.
    Done(Result<Outcome, AssistError>),
}

struct Job {
    ask: Ask,
    events: mpsc::UnboundedSender<JobEvent>,
}

/// The queue is full (or the worker has stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    /// This many requests are already waiting.
    #[error("busy: {0} requests are already waiting; try again later")]
    QueueFull(usize),
    /// The worker thread is gone.
    #[error("the model worker has stopped")]
    Stopped,
}

/// A running worker thread. Dropping every [`WorkerHandle`] ends it.
pub struct Worker {
    handle: WorkerHandle,
    thread: Option<JoinHandle<()>>,
}

/// A cheap, cloneable way to submit requests to a [`Worker`].
#[derive(Clone)]
pub struct WorkerHandle {
    tx: Sender<Job>,
    queue: usize,
    /// Requests queued or running.
    in_flight: Arc<AtomicUsize>,
    model_name: Arc<str>,
    status: watch::Receiver<Status>,
    status_tx: Arc<watch::Sender<Status>>,
}

impl Worker {
    /// Starts the thread; `queue` requests may wait while one runs.
    pub fn spawn<A: Assistant + 'static>(assistant: A, queue: usize) -> std::io::Result<Worker> {
        let (tx, rx) = channel::<Job>();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&in_flight);
        let (status_tx, status_rx) = watch::channel(Status::Idle);
        let status_tx = Arc::new(status_tx);
        let model_name: Arc<str> = Arc::from(assistant.model_name());
        let st = Arc::clone(&status_tx);
        let thread = std::thread::Builder::new()
            .name("pistil-model".into())
            .spawn(move || run(assistant, rx, &st, &count))?;
        Ok(Worker {
            handle: WorkerHandle {
                tx,
                queue,
                in_flight,
                model_name,
                status: status_rx,
                status_tx,
            },
            thread: Some(thread),
        })
    }

    /// A handle to submit requests.
    pub fn handle(&self) -> WorkerHandle {
        self.handle.clone()
    }

    /// Drops this worker's own handle and waits for the thread to finish the
    /// queued requests (other handles must be dropped too).
    pub fn join(mut self) {
        let thread = self.thread.take();
        drop(self);
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl WorkerHandle {
    /// Queues a request; refused at once when `queue` requests already
    /// wait behind a running one.
    pub fn submit(&self, ask: Ask) -> Result<JobStream, Busy> {
        let taken = self.in_flight.fetch_add(1, Ordering::SeqCst);
        if taken > self.queue {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(Busy::QueueFull(self.queue));
        }
        let (events, rx) = mpsc::unbounded_channel();
        match self.tx.send(Job { ask, events }) {
            Ok(()) => Ok(JobStream { rx }),
            Err(_) => {
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                Err(Busy::Stopped)
            }
        }
    }

    /// The model's name.
    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    /// What the worker is doing now (and changes, for the status LED).
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Sets the shown status from outside the worker (e.g. `Listening` while
    /// the push-to-talk button is held). The worker overrides it when a
    /// request starts or ends.
    pub fn set_status(&self, s: Status) {
        self.status_tx.send_replace(s);
    }
}

/// The pieces and end of one submitted request.
#[derive(Debug)]
pub struct JobStream {
    rx: mpsc::UnboundedReceiver<JobEvent>,
}

impl JobStream {
    /// The next event (async); `None` once the request has ended.
    pub async fn next(&mut self) -> Option<JobEvent> {
        self.rx.recv().await
    }

    /// The next event, blocking the thread (not for async code).
    pub fn blocking_next(&mut self) -> Option<JobEvent> {
        self.rx.blocking_recv()
    }

    /// Waits for the end, calling `on_piece` for every piece; returns the
    /// whole reply and outcome.
    pub async fn collect(
        mut self,
        mut on_piece: impl FnMut(&Piece),
    ) -> Result<(Reply, Outcome), AssistError> {
        let mut reply = Reply::default();
        while let Some(ev) = self.next().await {
            match ev {
                JobEvent::Piece(p) => {
                    on_piece(&p);
                    reply.push(&p);
                }
                JobEvent::Done(r) => return r.map(|o| (reply, o)),
            }
        }
        Err(AssistError::Engine(
            "the model worker stopped during the request".into(),
        ))
    }
}

fn run<A: Assistant>(
    mut assistant: A,
    rx: Receiver<Job>,
    status: &watch::Sender<Status>,
    in_flight: &AtomicUsize,
) {
    while let Ok(job) = rx.recv() {
        if job.events.is_closed() {
            // Its requester went away while it waited.
            in_flight.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        status.send_replace(Status::Thinking);
        let mut speaking = false;
        let events = &job.events;
        let result = assistant.generate(&job.ask, &mut |piece| {
            if !speaking && matches!(piece, Piece::Content(_)) {
                speaking = true;
                status.send_replace(Status::Speaking);
            }
            match events.send(JobEvent::Piece(piece)) {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            }
        });
        status.send_replace(if result.is_ok() {
            Status::Idle
        } else {
            Status::Error
        });
        if let Err(e) = &result {
            tracing::warn!("request failed: {e}");
        }
        // Free the slot before telling the requester, so its next request
        // is never refused as "busy" by a worker that is already idle.
        in_flight.fetch_sub(1, Ordering::SeqCst);
        let _ = job.events.send(JobEvent::Done(result));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assistant::DoneReason;
    use crate::testing::FakeAssistant;
    use std::time::Duration;

    #[test]
    fn queue_refuses_when_full_and_cancel_on_drop() {
        let mut fake = FakeAssistant::new("fake");
        fake.piece_delay = Duration::from_millis(20);
        let seen = fake.seen.clone();
        let worker = Worker::spawn(fake, 1).unwrap();
        let h = worker.handle();
        let mut first = h.submit(Ask::text("one two three four five six")).unwrap();
        // Wait until the first is running, so the queue (1) is empty.
        assert!(matches!(first.blocking_next(), Some(JobEvent::Piece(_))));
        let second = h.submit(Ask::text("queued")).unwrap();
        assert_eq!(
            h.submit(Ask::text("refused")).unwrap_err(),
            Busy::QueueFull(1)
        );
        // The second is dropped before it starts: it is skipped.
        drop(second);
        // The first runs to the end.
        let mut done = None;
        while let Some(ev) = first.blocking_next() {
            if let JobEvent::Done(r) = ev {
                done = Some(r);
            }
        }
        assert_eq!(done.unwrap().unwrap().done_reason, DoneReason::Stop);
        // A dropped running request is cancelled.
        let mut third = h.submit(Ask::text("a b c d e f g h i j k l m n")).unwrap();
        assert!(matches!(third.blocking_next(), Some(JobEvent::Piece(_))));
        drop(third);
        drop(h);
        worker.join();
        let seen = seen.lock().unwrap();
        let prompts: Vec<_> = seen
            .iter()
            .map(|a| a.messages()[0].content.clone())
            .collect();
        assert_eq!(
            prompts,
            ["one two three four five six", "a b c d e f g h i j k l m n"]
        );
    }

    #[test]
    fn queue_zero_is_free_again_as_soon_as_done_arrives() {
        let worker = Worker::spawn(FakeAssistant::new("fake"), 0).unwrap();
        let h = worker.handle();
        for i in 0..200 {
            let mut s = h
                .submit(Ask::text(format!("q{i}")))
                .expect("idle worker accepts");
            while let Some(ev) = s.blocking_next() {
                if matches!(ev, JobEvent::Done(_)) {
                    break;
                }
            }
        }
    }

    #[test]
    fn status_follows_the_request() {
        let fake = FakeAssistant::new("fake");
        fake.push(crate::testing::Script::Fail(AssistError::Engine(
            "boom".into(),
        )));
        let worker = Worker::spawn(fake, 4).unwrap();
        let h = worker.handle();
        let status = h.status();
        assert_eq!(*status.borrow(), Status::Idle);
        let mut s = h.submit(Ask::text("x")).unwrap();
        while let Some(ev) = s.blocking_next() {
            if let JobEvent::Done(r) = ev {
                assert!(r.is_err());
            }
        }
        assert_eq!(*status.borrow(), Status::Error);
        let mut s = h.submit(Ask::text("x")).unwrap();
        while s.blocking_next().is_some() {}
        assert_eq!(*status.borrow(), Status::Idle);
    }
}

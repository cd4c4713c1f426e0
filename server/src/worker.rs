//! The worker thread: owns the [`Backend`], runs one job at a time from a
//! bounded FIFO queue, loads and unloads models, and keeps the status the
//! HTTP handlers read.
//!
//! HTTP handlers never wait on the worker for anything but their own job's
//! events: they `try_send` into the queue (full → 503 at once) and read the
//! job's events from an unbounded channel. The status (`/api/ps`, `/health`)
//! sits behind a mutex the worker only holds to copy a few fields, never
//! during a load or a generation.
//!
//! A job whose client has gone (its event receiver dropped) is skipped if it
//! has not started, and cancelled within one token if it has (the sink sees
//! the closed channel and returns `Break`). A backend panic is caught: the
//! job gets an error, the model is unloaded (its state is suspect) and the
//! next request loads it again.

use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc::UnboundedSender;

use crate::backend::{Backend, BackendError, Event, GenRequest, ModelInfo, ModelSpec, Stats};
use crate::options::KeepAlive;

/// What a job asks for.
#[derive(Debug)]
pub enum JobKind {
    /// Generate a reply.
    Generate(Box<GenRequest>),
    /// Only load the model (Ollama: an empty prompt).
    Load,
    /// Unload the model if it is the loaded one (Ollama: empty prompt, `keep_alive: 0`).
    Unload,
}

/// One queued request.
#[derive(Debug)]
pub struct Job {
    /// The model it needs.
    pub spec: ModelSpec,
    /// What to do.
    pub kind: JobKind,
    /// How long the model stays loaded afterwards (`None`: the server's default).
    pub keep_alive: Option<KeepAlive>,
    /// Where its events go.
    pub tx: UnboundedSender<JobEvent>,
}

/// What a job reports, in order: `Loaded`?, `Piece`*, `Done`.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// The model had to be loaded for this job; it took this long.
    Loaded(Duration),
    /// A piece of the reply.
    Piece(Event),
    /// The end: statistics, or why it failed.
    Done(Result<Stats, BackendError>),
}

/// The loaded model, for `/api/ps`.
#[derive(Debug, Clone)]
pub struct LoadedStatus {
    /// What was asked for.
    pub spec: ModelSpec,
    /// What the backend reported.
    pub info: ModelInfo,
    /// When it will be unloaded (`None`: never).
    pub expires_at: Option<SystemTime>,
}

/// What the server is doing, as the handlers see it.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// The loaded model.
    pub loaded: Option<LoadedStatus>,
    /// A model being loaded now.
    pub loading: Option<String>,
    /// The last load error (cleared by a successful load).
    pub last_error: Option<String>,
    /// A job is running.
    pub busy: bool,
}

/// The handlers' side of the worker.
#[derive(Clone)]
pub struct WorkerHandle {
    tx: SyncSender<Job>,
    status: Arc<Mutex<Status>>,
    queued: Arc<AtomicUsize>,
}

impl std::fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .finish()
    }
}

/// The queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

impl WorkerHandle {
    /// Starts the worker thread with `backend`; at most `queue` jobs wait
    /// (besides the running one); `keep_alive` is the default after a job.
    pub fn spawn<B: Backend>(backend: B, queue: usize, keep_alive: KeepAlive) -> WorkerHandle {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue.max(1));
        let status = Arc::new(Mutex::new(Status::default()));
        let queued = Arc::new(AtomicUsize::new(0));
        let mut w = Worker {
            backend,
            status: status.clone(),
            queued: queued.clone(),
            default_keep_alive: keep_alive,
            loaded: None,
            expires: None,
        };
        let spawned = std::thread::Builder::new()
            .name("pistil-engine".into())
            .spawn(move || w.run(rx));
        if let Err(e) = spawned {
            tracing::error!("cannot start the engine thread: {e}");
        }
        WorkerHandle { tx, status, queued }
    }

    /// Queues a job; `Err(QueueFull)` when `queue` jobs already wait.
    pub fn submit(&self, job: Job) -> Result<(), QueueFull> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                Err(QueueFull)
            }
        }
    }

    /// A copy of the status.
    pub fn status(&self) -> Status {
        lock(&self.status).clone()
    }

    /// Jobs waiting (not the running one).
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }
}

fn lock(m: &Mutex<Status>) -> std::sync::MutexGuard<'_, Status> {
    // A panic while holding the lock cannot leave the status inconsistent
    // (plain field writes): keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Worker<B: Backend> {
    backend: B,
    status: Arc<Mutex<Status>>,
    queued: Arc<AtomicUsize>,
    default_keep_alive: KeepAlive,
    loaded: Option<ModelSpec>,
    /// When the loaded model expires (`None`: never).
    expires: Option<Instant>,
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl<B: Backend> Worker<B> {
    fn run(&mut self, rx: mpsc::Receiver<Job>) {
        loop {
            let job = match (self.loaded.is_some(), self.expires) {
                (true, Some(at)) => {
                    let wait = at.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(wait) {
                        Ok(j) => j,
                        Err(RecvTimeoutError::Timeout) => {
                            tracing::info!("keep-alive expired: unloading the model");
                            self.unload();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                _ => match rx.recv() {
                    Ok(j) => j,
                    Err(_) => break,
                },
            };
            self.queued.fetch_sub(1, Ordering::SeqCst);
            if job.tx.is_closed() {
                tracing::debug!("skipping a job whose client has gone");
                continue;
            }
            lock(&self.status).busy = true;
            self.handle(job);
            lock(&self.status).busy = false;
        }
        self.unload();
    }

    fn unload(&mut self) {
        if self.loaded.take().is_some() {
            self.backend.unload();
        }
        self.expires = None;
        lock(&self.status).loaded = None;
    }

    /// Loads `spec` unless it is loaded; `Ok(Some(d))` when a load took `d`.
    fn ensure_loaded(&mut self, spec: &ModelSpec) -> Result<Option<Duration>, BackendError> {
        if self.loaded.as_ref() == Some(spec) {
            return Ok(None);
        }
        self.unload();
        {
            let mut st = lock(&self.status);
            st.loading = Some(spec.name.clone());
        }
        let t0 = Instant::now();
        tracing::info!("loading {} ({})", spec.name, spec.path.display());
        let r = catch_unwind(AssertUnwindSafe(|| self.backend.load(spec)));
        let r = match r {
            Ok(r) => r,
            Err(p) => Err(BackendError::Load {
                name: spec.name.clone(),
                detail: format!("the loader panicked: {}", panic_text(&*p)),
            }),
        };
        let mut st = lock(&self.status);
        st.loading = None;
        match r {
            Ok(info) => {
                let d = t0.elapsed();
                tracing::info!("loaded {} in {:.2}s", spec.name, d.as_secs_f64());
                st.last_error = None;
                st.loaded = Some(LoadedStatus {
                    spec: spec.clone(),
                    info,
                    expires_at: None,
                });
                self.loaded = Some(spec.clone());
                Ok(Some(d))
            }
            Err(e) => {
                tracing::warn!("{e}");
                st.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn set_expiry(&mut self, keep_alive: KeepAlive) {
        match keep_alive.duration() {
            Some(d) if d.is_zero() => {
                tracing::info!("keep_alive 0: unloading the model");
                self.unload();
            }
            Some(d) => {
                self.expires = Some(Instant::now() + d);
                if let Some(l) = lock(&self.status).loaded.as_mut() {
                    l.expires_at = Some(SystemTime::now() + d);
                }
            }
            None => {
                self.expires = None;
                if let Some(l) = lock(&self.status).loaded.as_mut() {
                    l.expires_at = None;
                }
            }
        }
    }

    fn handle(&mut self, job: Job) {
        let keep_alive = job.keep_alive.unwrap_or(self.default_keep_alive);
        if let JobKind::Unload = job.kind {
            if self.loaded.as_ref() == Some(&job.spec) {
                self.unload();
            }
            let _ = job.tx.send(JobEvent::Done(Ok(Stats::default())));
            return;
        }
        match self.ensure_loaded(&job.spec) {
            Ok(Some(d)) => {
                let _ = job.tx.send(JobEvent::Loaded(d));
            }
            Ok(None) => {}
            Err(e) => {
                let _ = job.tx.send(JobEvent::Done(Err(e)));
                return;
            }
        }
        let result = match &job.kind {
            JobKind::Generate(req) => {
                let tx = job.tx.clone();
                let mut sink = |ev: Event| {
                    if tx.send(JobEvent::Piece(ev)).is_err() {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                };
                let r = catch_unwind(AssertUnwindSafe(|| self.backend.generate(req, &mut sink)));
                match r {
                    Ok(r) => r,
                    Err(p) => {
                        let msg = format!("the engine panicked: {}", panic_text(&*p));
                        tracing::error!("{msg}; unloading the model");
                        self.unload();
                        Err(BackendError::Internal(msg))
                    }
                }
            }
            JobKind::Load | JobKind::Unload => Ok(Stats::default()),
        };
        if let (Ok(s), JobKind::Generate(_)) = (&result, &job.kind) {
            tracing::info!(
                "{}: prompt {} ({} cached), {} generated, {:.1} tok/s, {:?}",
                job.spec.name,
                s.prompt_tokens,
                s.cached_tokens,
                s.gen_tokens,
                if s.eval.as_secs_f64() > 0.0 {
                    s.gen_tokens as f64 / s.eval.as_secs_f64()
                } else {
                    0.0
                },
                s.done_reason
            );
        }
        let _ = job.tx.send(JobEvent::Done(result));
        if self.loaded.is_some() {
            self.set_expiry(keep_alive);
        }
    }
}

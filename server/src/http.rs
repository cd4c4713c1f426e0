//! The HTTP server: router, API key, request log, body limit, shutdown, and
//! the glue between a handler and its job on the worker.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::Stream;
use serde_json::json;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::backend::{Backend, BackendError, Event, ModelSpec, Stats};
use crate::error::{ApiError, Flavor};
use crate::models::ModelSource;
use crate::options::KeepAlive;
use crate::worker::{Job, JobEvent, JobKind, WorkerHandle};
use crate::{ollama, openai};

/// The Ollama version `/api/version` reports. Clients gate features on it:
/// `think` needs 0.9.0, structured outputs 0.5.0. pistil's own version is in
/// the same answer as `pistil_version`.
pub const OLLAMA_COMPAT_VERSION: &str = "0.9.6";

/// Largest request body (bigger: 413).
pub const DEFAULT_BODY_LIMIT: usize = 2 << 20;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Require `Authorization: Bearer KEY` (all but `/`, `HEAD /` and `/health`).
    pub api_key: Option<String>,
    /// Jobs that may wait behind the running one (more: 503).
    pub queue: usize,
    /// How long a model stays loaded after a request, unless the request says.
    pub keep_alive: KeepAlive,
    /// A model to load at start (`/health` is 503 until it is ready).
    pub preload: Option<ModelSpec>,
    /// Largest request body.
    pub body_limit: usize,
    /// Worker threads of the async runtime (the cores belong to the kernels).
    pub http_threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 11434)),
            api_key: None,
            queue: 8,
            keep_alive: KeepAlive::For(Duration::from_secs(300)),
            preload: None,
            body_limit: DEFAULT_BODY_LIMIT,
            http_threads: 2,
        }
    }
}

/// What every handler shares.
pub struct AppState {
    /// The engine thread.
    pub worker: WorkerHandle,
    /// Model names → files.
    pub models: Arc<dyn ModelSource>,
    api_key: Option<String>,
    /// The start-up model is still loading.
    preloading: AtomicBool,
    /// Its load error, if it failed.
    preload_error: std::sync::Mutex<Option<String>>,
    ids: AtomicU64,
    body_limit: usize,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// A fresh id for a response (`chatcmpl-…`).
    pub fn next_id(&self) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        format!("{t:x}{n:04x}")
    }

    /// The model `name` names, or the error each API expects.
    pub fn resolve(&self, name: &str, flavor: Flavor) -> Result<ModelSpec, ApiError> {
        let loaded = self.worker.status().loaded.map(|l| l.spec);
        self.models
            .resolve(name, loaded.as_ref())
            .map_err(|e| ApiError::model_not_found(e.to_string()).flavor(flavor))
    }
}

/// Now as RFC 3339 with nanoseconds (Ollama's `created_at`).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
}

/// A time as RFC 3339.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Seconds since the epoch (OpenAI's `created`).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The body, or a JSON error (413 for a body over the limit).
pub fn body_bytes(
    body: Result<Bytes, BytesRejection>,
    flavor: Flavor,
    limit: usize,
) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        let status = r.status();
        let msg = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("request body is larger than the limit of {limit} bytes")
        } else {
            format!("cannot read the request body: {}", r.body_text())
        };
        ApiError::new(status, msg).flavor(flavor)
    })
}

impl AppState {
    /// See [`body_bytes`].
    pub fn body(
        &self,
        body: Result<Bytes, BytesRejection>,
        flavor: Flavor,
    ) -> Result<Bytes, ApiError> {
        body_bytes(body, flavor, self.body_limit)
    }
}

/// A job that has started producing: its first event (a piece or the end)
/// has arrived, so the HTTP status is known.
pub struct Running {
    /// The rest of the job's events.
    pub rx: UnboundedReceiver<JobEvent>,
    /// Time spent loading the model for this job.
    pub load: Duration,
    /// The first piece, or the end.
    pub first: Option<JobEvent>,
    /// When the request arrived.
    pub started: Instant,
}

/// Queues a job and waits for its first piece (or its end): errors before
/// any output become HTTP errors; later ones go into the stream.
pub async fn start_job(
    state: &AppState,
    spec: ModelSpec,
    kind: JobKind,
    keep_alive: Option<KeepAlive>,
    flavor: Flavor,
) -> Result<Running, ApiError> {
    let started = Instant::now();
    let (tx, mut rx) = unbounded_channel();
    state
        .worker
        .submit(Job {
            spec,
            kind,
            keep_alive,
            tx,
        })
        .map_err(|_| ApiError::busy().flavor(flavor))?;
    let mut load = Duration::ZERO;
    loop {
        match rx.recv().await {
            Some(JobEvent::Loaded(d)) => load = d,
            Some(JobEvent::Done(Err(e))) => return Err(ApiError::from(e).flavor(flavor)),
            Some(ev) => {
                return Ok(Running {
                    rx,
                    load,
                    first: Some(ev),
                    started,
                })
            }
            None => return Err(ApiError::internal("the engine thread has stopped").flavor(flavor)),
        }
    }
}

/// A whole reply, collected.
#[derive(Debug, Default)]
pub struct Collected {
    /// The answer.
    pub content: String,
    /// The thought.
    pub thinking: String,
    /// The end.
    pub stats: Stats,
}

impl Running {
    /// The next event (`None` when the worker dropped the job: reported as an error).
    pub async fn next(&mut self) -> Option<JobEvent> {
        if let Some(ev) = self.first.take() {
            return Some(ev);
        }
        self.rx.recv().await
    }

    /// Reads every event to the end.
    pub async fn collect(mut self) -> Result<(Collected, Duration), BackendError> {
        let mut c = Collected::default();
        loop {
            match self.next().await {
                Some(JobEvent::Piece(Event::Content(t))) => c.content.push_str(&t),
                Some(JobEvent::Piece(Event::Thinking(t))) => c.thinking.push_str(&t),
                Some(JobEvent::Loaded(d)) => self.load = d,
                Some(JobEvent::Done(r)) => {
                    c.stats = r?;
                    return Ok((c, self.load));
                }
                None => {
                    return Err(BackendError::Internal(
                        "the engine thread has stopped".into(),
                    ))
                }
            }
        }
    }
}

/// A streamed body from a `Running` job: `map` turns each event into bytes
/// (`None`: nothing to send), `end` writes the last part after `Done`.
pub fn stream_body<S, F>(running: Running, state: S, map: F) -> Body
where
    S: Send + 'static,
    F: FnMut(&mut S, &Running, Option<JobEvent>) -> (Option<Bytes>, bool) + Send + 'static,
{
    struct St<S, F> {
        running: Running,
        state: S,
        map: F,
        done: bool,
    }
    let st = St {
        running,
        state,
        map,
        done: false,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            let ev = st.running.next().await;
            let (bytes, done) = (st.map)(&mut st.state, &st.running, ev);
            st.done = done;
            if let Some(b) = bytes {
                return Some((Ok::<Bytes, Infallible>(b), st));
            }
        }
    });
    Body::from_stream(stream)
}

/// A response with a content type.
pub fn typed(status: StatusCode, content_type: &'static str, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON response.
pub fn json_response<T: serde::Serialize>(status: StatusCode, v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => typed(status, "application/json; charset=utf-8", Body::from(b)),
        Err(e) => ApiError::internal(format!("cannot encode the answer: {e}")).into_response(),
    }
}

/// A stream of bytes as a response.
pub fn stream_response<St>(content_type: &'static str, s: St) -> Response
where
    St: Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
{
    typed(StatusCode::OK, content_type, Body::from_stream(s))
}

async fn root() -> Response {
    typed(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        Body::from("Ollama is running"),
    )
}

async fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "version": OLLAMA_COMPAT_VERSION,
            "pistil_version": env!("CARGO_PKG_VERSION"),
        }),
    )
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    let s = st.worker.status();
    let model = s.loaded.as_ref().map(|l| l.spec.name.clone());
    if let Some(m) = s.loading {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "loading", "model": m}),
        );
    }
    if st.preloading.load(Ordering::SeqCst) {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "loading", "model": model}),
        );
    }
    let err = st
        .preload_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some(e) = err.filter(|_| s.loaded.is_none()) {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "error", "error": e, "model": model}),
        );
    }
    json_response(
        StatusCode::OK,
        &json!({"status": "ok", "model": model, "busy": s.busy, "queued": st.worker.queued()}),
    )
}

async fn not_found(req: Request) -> Response {
    let flavor = flavor_of(req.uri().path());
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("{} {} not found", req.method(), req.uri().path()),
    )
    .flavor(flavor)
    .into_response()
}

async fn method_not_allowed(req: Request) -> Response {
    let flavor = flavor_of(req.uri().path());
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {} is not allowed on {}",
            req.method(),
            req.uri().path()
        ),
    )
    .flavor(flavor)
    .into_response()
}

fn flavor_of(path: &str) -> Flavor {
    if path.starts_with("/v1/") {
        Flavor::OpenAi
    } else {
        Flavor::Ollama
    }
}

/// Constant-time comparison (the key must not leak through timing).
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(key) = st.api_key.as_deref() else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    if path == "/" || path == "/health" {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match given {
        Some(g) if same(g.as_bytes(), key.as_bytes()) => next.run(req).await,
        _ => {
            let flavor = flavor_of(path);
            let msg = if given.is_some() {
                "invalid API key"
            } else {
                "missing API key: send the header 'Authorization: Bearer <key>'"
            };
            let mut e = ApiError::new(StatusCode::UNAUTHORIZED, msg).flavor(flavor);
            e.code = Some("invalid_api_key");
            e.into_response()
        }
    }
}

async fn log_requests(req: Request, next: Next) -> Response {
    let t0 = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let r = next.run(req).await;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    // Streamed answers are logged when their headers go out.
    if method == Method::HEAD || path == "/health" {
        tracing::debug!("{method} {path} {} {ms:.1}ms", r.status().as_u16());
    } else {
        tracing::info!("{method} {path} {} {ms:.1}ms", r.status().as_u16());
    }
    r
}

/// The router over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.body_limit;
    Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/api/version", get(version))
        .route("/api/tags", get(ollama::tags))
        .route("/api/ps", get(ollama::ps))
        .route("/api/show", post(ollama::show))
        .route("/api/generate", post(ollama::generate))
        .route("/api/chat", post(ollama::chat))
        .route("/api/pull", post(ollama::pull))
        .route("/v1/models", get(openai::models))
        .route("/v1/models/{model}", get(openai::model))
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/completions", post(openai::completions))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(middleware::from_fn(log_requests))
        .with_state(state)
}

/// Builds the state and starts the worker with `backend`.
pub fn app_state<B: Backend>(
    cfg: &ServerConfig,
    backend: B,
    models: Arc<dyn ModelSource>,
) -> Arc<AppState> {
    let worker = WorkerHandle::spawn(backend, cfg.queue, cfg.keep_alive);
    let state = Arc::new(AppState {
        worker,
        models,
        api_key: cfg.api_key.clone().filter(|k| !k.is_empty()),
        preloading: AtomicBool::new(cfg.preload.is_some()),
        preload_error: std::sync::Mutex::new(None),
        ids: AtomicU64::new(0),
        body_limit: cfg.body_limit,
    });
    if let Some(spec) = cfg.preload.clone() {
        // Loaded by the worker; the model stays until a request's keep_alive says otherwise.
        let (tx, mut rx) = unbounded_channel();
        let queued = state.worker.submit(Job {
            spec,
            kind: JobKind::Load,
            keep_alive: Some(KeepAlive::Forever),
            tx,
        });
        let st = state.clone();
        if queued.is_err() {
            st.preloading.store(false, Ordering::SeqCst);
        } else {
            std::thread::spawn(move || {
                while let Some(ev) = rx.blocking_recv() {
                    if let JobEvent::Done(r) = ev {
                        if let Err(e) = r {
                            tracing::error!("{e}");
                            *st.preload_error.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(e.to_string());
                        }
                        break;
                    }
                }
                st.preloading.store(false, Ordering::SeqCst);
            });
        }
    }
    state
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Runs the server until SIGINT/SIGTERM: binds `cfg.addr`, starts the
/// worker over `backend`, serves. Blocks.
pub fn run<B: Backend>(
    cfg: ServerConfig,
    backend: B,
    models: Arc<dyn ModelSource>,
    on_listening: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.http_threads.max(1))
        .max_blocking_threads(4)
        .thread_name("pistil-http")
        .enable_io()
        .enable_time()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.addr).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", cfg.addr))
        })?;
        let addr = listener.local_addr()?;
        let state = app_state(&cfg, backend, models);
        on_listening(addr);
        let shutdown = async {
            shutdown_signal().await;
            tracing::info!("shutting down");
        };
        let server = serve_on(listener, state, shutdown);
        tokio::pin!(server);
        tokio::select! {
            r = &mut server => r,
            // A stream that never ends must not hold the exit: give open
            // requests a few seconds after the signal.
            _ = async { shutdown_signal().await; tokio::time::sleep(Duration::from_secs(5)).await } => Ok(()),
        }
    })
}

/// Completes on Ctrl-C or SIGTERM (systemd's stop). The other long-running
/// commands (`pistil wyoming`, `pistil mqtt`) stop on it too.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

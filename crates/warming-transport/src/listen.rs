//! Accepting connections with hyper's own limits, where `axum::serve` has
//! none: a header read timeout (a client that never finishes its headers
//! is dropped), admission (who is held when more connect than may be:
//! [`crate::admission`]), and accepting that goes on after a failed accept
//! (EMFILE) instead of spinning or stopping.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admission::{Admission, AdmissionLimits, Admitted, Place};

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Who is held when more connect than may be (see [`crate::admission`]).
    pub admission: AdmissionLimits,
    /// Longest a client may take to send a request's headers.
    pub header_read_timeout: Duration,
}

/// Whether a request may be served on a reserved connection: a probe, or
/// a caller holding the token.
pub type Trusted = Arc<dyn Fn(&http::request::Parts) -> bool + Send + Sync>;

/// How long to wait after a failed accept (e.g. out of file descriptors)
/// before trying again: long enough for connections to close.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `stop` is cancelled, then waits for
/// the connections in flight to finish (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    trusted: Trusted,
    stop: CancellationToken,
) {
    let admission = Admission::new(limits.admission);
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // A client that sends its whole request and then closes its side
        // still reads the answer (hyper would otherwise drop the
        // connection at the client's EOF, the answer unsent).
        .half_close(true);
    loop {
        // Accepted at once, whatever is held: admission decides who stays,
        // so no client waits in the backlog behind sockets that send
        // nothing.
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed; retrying shortly");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let Some(place) = admission.admit(peer.ip(), has_spoken(&stream)) else {
            tracing::debug!(client = %peer.ip(), "connection refused: every place is busy");
            continue;
        };
        let cut = place.cut.clone();
        let place = Arc::new(place);
        let spoke = place.clone();
        let service =
            TowerToHyperService::new(admitted_service(router.clone(), place, trusted.clone()));
        let watcher = graceful.watcher();
        let (builder, first_byte_within) = (builder.clone(), limits.header_read_timeout);
        tokio::spawn(async move {
            // hyper's header timeout starts with the first byte (the HTTP
            // version is sniffed before it): a client that sends nothing
            // would hold its place until another needs it.
            let mut first = [0_u8; 1];
            tokio::select! {
                peeked = tokio::time::timeout(first_byte_within, stream.peek(&mut first)) => {
                    match peeked {
                        Ok(Ok(n)) if n > 0 => spoke.spoke(),
                        _ => return,
                    }
                }
                () = cut.cancelled() => return,
            }
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            tokio::select! {
                served = watcher.watch(connection) => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                () = cut.cancelled() => {
                    tracing::debug!(%peer, "connection cut to make room for another");
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Whether the client's first bytes are already waiting, without waiting
/// for them: a real client sends its request as soon as it connects.
fn has_spoken(stream: &tokio::net::TcpStream) -> bool {
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut first = [0_u8; 1];
    let mut buf = tokio::io::ReadBuf::new(&mut first);
    matches!(stream.poll_peek(&mut cx, &mut buf), std::task::Poll::Ready(Ok(n)) if n > 0)
}

/// The service of one admitted connection: each request marks the
/// connection busy until its response's body is sent; on a reserved
/// connection, only trusted requests are served.
fn admitted_service(router: Router, place: Arc<Place>, trusted: Trusted) -> AdmittedService {
    AdmittedService {
        router,
        place,
        trusted,
    }
}

/// See [`admitted_service`].
#[derive(Clone)]
struct AdmittedService {
    router: Router,
    place: Arc<Place>,
    trusted: Trusted,
}

impl tower::Service<http::Request<hyper::body::Incoming>> for AdmittedService {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let busy = self.place.busy();
        let (parts, body) = request.into_parts();
        if self.place.admitted == Admitted::Reserved && !(self.trusted)(&parts) {
            return Box::pin(async { Ok(at_capacity()) });
        }
        let request = http::Request::from_parts(parts, axum::body::Body::new(body));
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(request).await?;
            // Busy until the body is sent: a proxied stream is not idle.
            Ok(response.map(|body| {
                axum::body::Body::new(body.map_frame(move |frame| {
                    let _still_busy = &busy;
                    frame
                }))
            }))
        })
    }
}

/// A 503 for a caller on the reserve without the right to it.
fn at_capacity() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        http::StatusCode::SERVICE_UNAVAILABLE,
        [
            (http::header::CONNECTION, "close"),
            (http::header::RETRY_AFTER, "1"),
        ],
        axum::Json(serde_json::json!({"error": {"code": "busy",
            "message": "the server holds as many connections as it may (--max-connections, \
                        --max-connections-per-client); only /healthz, /readyz and callers with \
                        the token are served on its reserve; try again"}})),
    )
        .into_response()
}

/// Connections the kernel queues before the server accepts them. Tokio's
/// `TcpListener::bind` asks for 1 024; a burst larger than that (a flood of
/// reconnecting sockets) overflows it, and each dropped SYN costs a client,
/// the health probe included, a retransmission a second or more later.
/// The kernel caps this at `net.core.somaxconn` (4 096 by default).
const BACKLOG: u32 = 4_096;

/// Listens on `addr` with a backlog of [`BACKLOG`]. Call it within a
/// Tokio runtime.
///
/// # Errors
/// When the address cannot be bound.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std's and tokio's own bind do on Unix: a restart may bind while
    // the last run's connections are in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

//! The accept loop: warp's routes served through hyper's HTTP/1 connection with a timer,
//! because warp's own `serve` has no header-read timeout. HTTP/1 only: WebSockets upgrade from
//! it, browsers speak HTTP/2 only over TLS (which a proxy in front terminates), and HTTP/2's
//! protocol sniffing would let a silent connection hold its slot with no timeout at all. It caps open connections, tags each request with its TCP peer, and on
//! shutdown stops accepting, lets requests in flight finish, closes WebSockets with "going
//! away", and gives up after the grace period with a warning.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::http::{router, Ctx, PeerAddr, RequestMeta};

pub async fn serve(listener: TcpListener, ctx: Arc<Ctx>) {
    let settings = ctx.settings.clone();
    let router = Arc::new(router::router(&ctx));
    let mut builder = http1::Builder::new();
    // The header timeout also runs while a connection waits for its next request, so an idle
    // keep-alive connection gives its slot back after the same time.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.server.header_read_timeout())
        .max_buf_size(64 * 1024);
    let connections = tokio_util::task::TaskTracker::new();
    let slots = Arc::new(Semaphore::new(settings.server.max_connections));
    let shutdown = ctx.shutdown.clone();

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; refusing a connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        // Shared with a WebSocket the connection may become, so the slot stays taken while
        // the socket lives.
        let permit: crate::http::upgrade::Hold = Arc::new(permit);
        let slot = permit.clone();
        let trusted_proxies = settings.limits.trusted_proxies;
        let per_request = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            // Read once here, where the headers can be borrowed; warp's header filters clone.
            let meta =
                RequestMeta::from_parts(Some(PeerAddr(peer)), req.headers(), trusted_proxies);
            req.extensions_mut().insert(Arc::new(meta));
            crate::http::upgrade::UpgradeSlot::attach(&mut req, &slot);
            let method = req.method().clone();
            let started = std::time::Instant::now();
            let (route, answer) = router.call(req);
            async move {
                let resp = answer.await;
                if let Ok(resp) = &resp {
                    crate::metrics::http_request(&method, route, resp.status().as_u16(), started);
                }
                resp
            }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), per_request)
            .with_upgrades();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = shutdown.cancelled() => {
                    // Finish the request in flight, then close; an upgraded socket has left
                    // hyper already and is closed by its own task.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }

    drop(listener);
    tracing::info!("draining: no new connections; waiting for open requests and sockets");
    ctx.sockets.close();
    connections.close();
    let drained = async {
        connections.wait().await;
        ctx.sockets.wait().await;
    };
    if tokio::time::timeout(settings.server.shutdown_grace(), drained)
        .await
        .is_err()
    {
        tracing::warn!(grace = ?settings.server.shutdown_grace(), "grace period ran out; closing the remaining connections");
    }
}

/// Serves `GET /metrics` (and a 404 for anything else) on a listener of its own, for scrapers
/// on a private network. Stops accepting when `shutdown` is cancelled.
pub async fn serve_metrics(listener: TcpListener, shutdown: tokio_util::sync::CancellationToken) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let conn = builder.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(|req: hyper::Request<Incoming>| async move {
                let resp = if req.method() == hyper::Method::GET && req.uri().path() == "/metrics" {
                    crate::http::metrics_response()
                } else {
                    crate::http::ApiError::not_found("no such endpoint").into_response()
                };
                Ok::<_, std::convert::Infallible>(resp)
            }),
        );
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

//! The accept loop: warp's routes served through hyper-util, because warp's own `serve` has no
//! header-read timeout. It caps open connections, tags each request with its TCP peer, and on
//! shutdown stops accepting, lets requests in flight finish, closes WebSockets with "going
//! away", and gives up after the grace period with a warning.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_service::Service;

use crate::http::{routes, Ctx, PeerAddr};

pub async fn serve(listener: TcpListener, ctx: Arc<Ctx>) {
    let settings = ctx.settings.clone();
    let service = warp::service(routes::routes(ctx.clone()));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout())
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(settings.max_connections));
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
        let service = service.clone();
        let per_request = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(PeerAddr(peer));
            let mut service = service.clone();
            service.call(req)
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), per_request)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }

    drop(listener);
    tracing::info!("draining: no new connections; waiting for open requests and sockets");
    ctx.sockets.close();
    let drained = async {
        graceful.shutdown().await;
        ctx.sockets.wait().await;
    };
    if tokio::time::timeout(settings.shutdown_grace(), drained)
        .await
        .is_err()
    {
        tracing::warn!(grace = ?settings.shutdown_grace(), "grace period ran out; closing the remaining connections");
    }
}

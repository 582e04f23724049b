//! Client sockets: each one bound to a 127.0.0.x source address before it connects, so that a
//! run of tens of thousands of connections does not exhaust one address's ephemeral ports; a
//! bare HTTP/1 keep-alive connection on top; and a WebSocket handshake on top of that.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

/// Source addresses in use: 127.0.0.1 .. 127.0.0.SOURCES. Each gives about 28,000 ephemeral
/// ports (the kernel's default range).
const SOURCES: u32 = 200;

/// The source address of a client's `n`-th connection.
pub fn source(n: u64) -> IpAddr {
    let host = 1 + (n % u64::from(SOURCES)) as u8;
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, host))
}

/// Opens a TCP connection to `server` from the `n`-th source address. The server must listen
/// on a loopback address (or 0.0.0.0) for the other source addresses to reach it.
pub async fn connect(server: SocketAddr, n: u64) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket
        .bind(SocketAddr::new(source(n), 0))
        .with_context(|| format!("bind {}", source(n)))?;
    let stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(server))
        .await
        .context("connect timed out")?
        .context("connect")?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One HTTP/1 keep-alive connection; requests on it go one after another.
pub struct HttpConn {
    sender: http1::SendRequest<Full<Bytes>>,
    host: String,
}

pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl HttpConn {
    pub async fn open(server: SocketAddr, n: u64) -> anyhow::Result<Self> {
        let stream = connect(server, n).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            host: server.to_string(),
        })
    }

    pub async fn request(
        &mut self,
        method: hyper::Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Bytes>,
    ) -> anyhow::Result<Answer> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.host);
        if let Some(token) = auth {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = match body {
            Some(b) => req
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(b))?,
            None => req.body(Full::new(Bytes::new()))?,
        };
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Answer { status, body })
    }

    /// Sends a request and hands back the response with its body still streaming.
    pub async fn stream(
        &mut self,
        path: &str,
        auth: &str,
        body: Bytes,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let req = hyper::Request::builder()
            .method(hyper::Method::POST)
            .uri(path)
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::AUTHORIZATION, format!("Bearer {auth}"))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        self.sender.ready().await?;
        Ok(self.sender.send_request(req).await?)
    }

    /// A request whose answer must be 2xx; its body as JSON.
    pub async fn json(
        &mut self,
        method: hyper::Method,
        path: &str,
        auth: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let body = body.map(|v| Bytes::from(v.to_string()));
        let answer = self.request(method.clone(), path, auth, body).await?;
        if !(200..300).contains(&answer.status) {
            bail!(
                "{method} {path}: {} {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            );
        }
        Ok(serde_json::from_slice(&answer.body)?)
    }
}

pub type Socket = WebSocketStream<TcpStream>;

/// tungstenite zero-fills its whole read buffer before every read, so its 128 KiB default
/// costs a 128 KiB memset per frame received; 4 KiB holds several event frames.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096)
}

/// Opens a WebSocket to `path` on `server` from the `n`-th source address.
pub async fn websocket(server: SocketAddr, path: &str, n: u64) -> anyhow::Result<Socket> {
    let stream = connect(server, n).await?;
    let request = format!("ws://{server}{path}").into_client_request()?;
    let (socket, _) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::client_async_with_config(request, stream, Some(client_config())),
    )
    .await
    .context("websocket handshake timed out")??;
    Ok(socket)
}

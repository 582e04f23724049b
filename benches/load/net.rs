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

/// A minimal HTTP/1.1 keep-alive client for the request loops: the request is formatted into
/// one buffer and written with one syscall, and the answer is read in the same task. hyper's
/// client hands each request to a connection task and back, which made the generator cost
/// as much CPU as the server it measures.
pub struct RawConn {
    stream: TcpStream,
    host: String,
    out: Vec<u8>,
    buf: Vec<u8>,
}

impl RawConn {
    pub async fn open(server: SocketAddr, n: u64) -> anyhow::Result<Self> {
        Ok(Self {
            stream: connect(server, n).await?,
            host: server.to_string(),
            out: Vec::with_capacity(512),
            buf: Vec::with_capacity(8192),
        })
    }

    /// Sends one request and reads its answer; the answer must carry a Content-Length.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<&[u8]>,
    ) -> anyhow::Result<Answer> {
        use std::io::Write;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.out.clear();
        write!(
            self.out,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n",
            self.host
        )?;
        if let Some(token) = auth {
            write!(self.out, "Authorization: Bearer {token}\r\n")?;
        }
        match body {
            Some(b) => {
                write!(
                    self.out,
                    "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    b.len()
                )?;
                self.out.extend_from_slice(b);
            }
            None => self.out.extend_from_slice(b"\r\n"),
        }
        self.stream.write_all(&self.out).await?;
        self.buf.clear();
        loop {
            if let Some(answer) = parse_answer(&self.buf)? {
                return Ok(answer);
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(8192);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("the server closed the connection");
            }
        }
    }
}

/// A whole answer in `buf`, or `None` when more bytes are needed.
fn parse_answer(buf: &[u8]) -> anyhow::Result<Option<Answer>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).context("answer head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .context("no status line")?;
    let length: usize = lines
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .context("answer without Content-Length")?;
    let start = end + 4;
    if buf.len() < start + length {
        return Ok(None);
    }
    if buf.len() > start + length {
        bail!("bytes after the answer (the generator never pipelines)");
    }
    Ok(Some(Answer {
        status,
        body: Bytes::copy_from_slice(&buf[start..]),
    }))
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

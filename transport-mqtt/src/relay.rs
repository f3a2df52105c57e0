//! The in-process relay that frees every connection of the 40 ms stall.
//!
//! A broker without `TCP_NODELAY` (mosquitto's default, rumqttd always) holds its second small
//! write until the client acknowledges the first, and Linux delays that acknowledgement by up
//! to 40 ms on a connection that looks interactive. rumqttc offers no hook on its socket, but
//! it can tunnel through an HTTP CONNECT proxy: this relay is that proxy, on loopback, in the
//! driver's own runtime. It owns the socket to the broker, sets `TCP_NODELAY` both ways, and
//! turns `TCP_QUICKACK` back on after every read (Linux clears it), so every segment from the
//! broker is acknowledged at once. TLS stays end to end: the relay only copies bytes.
//!
//! It connects only to the brokers its own connections registered, so it is no open proxy.

use std::collections::HashSet;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A running relay: where it listens, and the brokers it may reach.
#[derive(Clone, Debug)]
pub(crate) struct Relay {
    port: u16,
    allowed: Arc<Mutex<HashSet<String>>>,
}

/// How long the relay waits for a client's CONNECT line, and for the broker to accept: past
/// it, the client hears "timed out" and tries again, within its own connect timeout.
const WAIT: Duration = Duration::from_secs(5);

/// HTTP statuses that carry why the broker could not be reached back to the client.
pub(crate) const RESET: u16 = 500;
pub(crate) const REFUSED: u16 = 502;
pub(crate) const UNRESOLVED: u16 = 503;
pub(crate) const TIMED_OUT: u16 = 504;

impl Relay {
    /// Binds on loopback and serves from the current tokio runtime.
    pub(crate) fn start(listener: std::net::TcpListener) -> io::Result<Relay> {
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let listener = TcpListener::from_std(listener)?;
        let relay = Relay {
            port,
            allowed: Arc::default(),
        };
        let allowed = Arc::clone(&relay.allowed);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let allowed = Arc::clone(&allowed);
                tokio::spawn(async move {
                    let _ = serve(client, allowed).await;
                });
            }
        });
        Ok(relay)
    }

    /// The proxy setting for a connection to `host:port`, which it registers. An IPv6
    /// literal travels in brackets, as in any URL.
    pub(crate) fn proxy_for(&self, host: &str, port: u16) -> rumqttc::Proxy {
        lock(&self.allowed).insert(format!("{}:{port}", bracketed(host)));
        rumqttc::Proxy {
            ty: rumqttc::ProxyType::Http,
            auth: rumqttc::ProxyAuth::None,
            addr: "127.0.0.1".into(),
            port: self.port,
        }
    }
}

/// `host`, in brackets if it is an IPv6 literal.
pub(crate) fn bracketed(host: &str) -> String {
    match host.contains(':') && !host.starts_with('[') {
        true => format!("[{host}]"),
        false => host.to_owned(),
    }
}

fn lock(allowed: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    allowed.lock().unwrap_or_else(|p| p.into_inner())
}

/// One tunnel: read `CONNECT host:port`, reach the broker, answer 200, then copy both ways.
async fn serve(mut client: TcpStream, allowed: Arc<Mutex<HashSet<String>>>) -> io::Result<()> {
    client.set_nodelay(true)?;
    let target = tokio::time::timeout(WAIT, read_connect(&mut client))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no CONNECT line"))??;
    if !lock(&allowed).contains(&target) {
        return answer(&mut client, 403, "Forbidden").await;
    }
    let connected = tokio::time::timeout(WAIT, TcpStream::connect(&target)).await;
    let broker = match connected {
        Ok(Ok(broker)) => broker,
        Ok(Err(error)) => return answer(&mut client, status_of(&error), "Bad Gateway").await,
        // A black hole: nothing answers, not even a refusal.
        Err(_) => return answer(&mut client, TIMED_OUT, "Gateway Timeout").await,
    };
    // A broker that resets at once shows up in the copy below, not here.
    let _ = broker.set_nodelay(true);
    answer(&mut client, 200, "Connection established").await?;
    let mut broker = QuickAck(broker);
    tokio::io::copy_bidirectional(&mut client, &mut broker).await?;
    Ok(())
}

/// Why the broker could not be reached, as the client reads it: a refusal or a name that does
/// not resolve is final; a reset, a time-out or an unreachable network may pass, and is tried
/// again.
fn status_of(error: &io::Error) -> u16 {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => REFUSED,
        io::ErrorKind::TimedOut
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::NetworkDown => TIMED_OUT,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => RESET,
        _ => UNRESOLVED,
    }
}

/// The request head, up to its blank line; the target of its `CONNECT`.
async fn read_connect(client: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    // Byte by byte: nothing past the head may be consumed, it belongs to the tunnel.
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 || client.read(&mut byte).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad CONNECT"));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut words = head.split_ascii_whitespace();
    match (words.next(), words.next()) {
        (Some("CONNECT"), Some(target)) => Ok(target.to_owned()),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "not a CONNECT")),
    }
}

async fn answer(client: &mut TcpStream, code: u16, reason: &str) -> io::Result<()> {
    let response = format!("HTTP/1.1 {code} {reason}\r\n\r\n");
    client.write_all(response.as_bytes()).await
}

/// The broker's socket, acknowledging every segment at once.
struct QuickAck(TcpStream);

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            quick_ack(&self.0);
        }
        polled
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Linux clears quick-ack mode after a while: set it again after every read.
#[cfg(target_os = "linux")]
fn quick_ack(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_tcp_quickack(true);
}

#[cfg(not(target_os = "linux"))]
fn quick_ack(_: &TcpStream) {}

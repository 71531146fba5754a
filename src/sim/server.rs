//! Serving the simulated tailnet over real HTTP on a local port.
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{SimConfig, SimTailnet};

/// How long [`SimServer::shutdown`] waits for in-flight requests before aborting.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A connection's identity and kill switch, available to handlers as
/// `ConnectInfo<ConnHandle>`. Killing makes every later read or write on the connection fail,
/// so hyper closes it without sending the pending response.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    pub peer: SocketAddr,
    killed: Arc<AtomicBool>,
}

impl ConnHandle {
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }
}

impl Connected<IncomingStream<'_, SimListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP stream that fails all I/O once its connection is killed.
pub struct KillableStream {
    inner: TcpStream,
    killed: Arc<AtomicBool>,
}

fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection dropped by a simulated fault",
    )
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A TCP listener handing out killable streams.
pub struct SimListener {
    inner: TcpListener,
}

impl Listener for SimListener {
    type Io = KillableStream;
    type Addr = ConnHandle;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let killed = Arc::new(AtomicBool::new(false));
                    let io = KillableStream {
                        inner: stream,
                        killed: killed.clone(),
                    };
                    return (io, ConnHandle { peer, killed });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "sim: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnHandle {
            peer: self.inner.local_addr()?,
            killed: Arc::new(AtomicBool::new(false)),
        })
    }
}

/// The simulated tailnet served over HTTP. Stops when dropped.
pub struct SimServer {
    addr: SocketAddr,
    tailnet: SimTailnet,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    /// Delivers webhook events to the registered endpoints.
    deliveries: JoinHandle<()>,
}

impl SimServer {
    /// Builds a tailnet from `config` and serves it on `addr` (port 0 picks a free port).
    pub async fn start(config: SimConfig, addr: SocketAddr) -> io::Result<SimServer> {
        SimServer::serve(SimTailnet::new(config), addr).await
    }

    /// Serves an existing tailnet (e.g. one a test already prepared) on `addr`.
    pub async fn serve(tailnet: SimTailnet, addr: SocketAddr) -> io::Result<SimServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = tailnet
            .router()
            .into_make_service_with_connect_info::<ConnHandle>();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server =
                axum::serve(SimListener { inner: listener }, app).with_graceful_shutdown(async {
                    let _ = stopped.await;
                });
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "sim: server stopped with an error");
            }
        });
        let deliveries = tokio::spawn(tailnet.clone().deliver_webhooks());
        Ok(SimServer {
            addr,
            tailnet,
            stop: Some(stop),
            task: Some(task),
            deliveries,
        })
    }

    /// `http://127.0.0.1:PORT`: give this to the client as its base URL (it appends `/api/v2`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn tailnet(&self) -> &SimTailnet {
        &self.tailnet
    }

    /// Stops accepting, lets in-flight requests finish (up to a few seconds), then returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Idle keep-alive connections could hold graceful shutdown open; a dropped server must
        // not outlive its owner, so stop serving now.
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.deliveries.abort();
    }
}

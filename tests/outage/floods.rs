//! Sockets that hold the server without asking anything of it: thousands
//! that send nothing and thousands that trickle a body, from many client
//! addresses (127.0.0.2 and up), each reconnecting a few seconds after it
//! is cut (as a slowloris tool's sockets do), so the flood never ebbs.
//! Meanwhile `/healthz` and a caller with the token, each on a new
//! connection from 127.0.0.1, must be answered within a second, every time.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_util::sync::CancellationToken;
use warming_testkit::{Standin, StandinOptions};

use crate::support::Service;

const TOKEN: &str = "flood-test-token-0123456789";
/// Silent and trickling sockets: together well past the server's 1 152
/// places (1 024 + the reserve), so admission must make room. Half what it
/// was: on stop 35's 2-core machines, with the flood's 4 000 client tasks
/// on the same cores, the first probe timed out at 2 000 + 2 000 with this
/// code and the code before it alike (docs/RELIABILITY.md).
const IDLE: usize = 1_000;
const TRICKLING: usize = 1_000;
/// Client addresses the flood comes from: 127.0.0.2 and up.
const ADDRESSES: u8 = 16;
/// How long a cut attacker waits before connecting again.
const RECONNECT: Duration = Duration::from_secs(3);
/// How long the probes run while the flood holds.
const PROBING: Duration = Duration::from_secs(15);

/// A socket from `127.0.0.<last>` to `to`.
async fn connect_from(last: u8, to: SocketAddr) -> Option<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket
        .bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, last), 0)))
        .ok()?;
    socket.connect(to).await.ok()
}

/// One attacker's socket, again and again until `stop`: connects, then
/// either sends nothing or a request head and a body a byte a second,
/// until the server cuts it; [`RECONNECT`] later, again. Counts its
/// connects.
async fn attacker(
    n: usize,
    trickle: bool,
    to: SocketAddr,
    stop: CancellationToken,
    connects: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let last = 2 + u8::try_from(n % usize::from(ADDRESSES)).unwrap();
    // Opened over a second or two, as a tool opening thousands would; a
    // burst of thousands of SYNs at once overflows the kernel's queues
    // before any server code runs.
    let n = u64::try_from(n).unwrap();
    tokio::time::sleep(Duration::from_micros(500 * n)).await;
    while !stop.is_cancelled() {
        if let Some(mut stream) = connect_from(last, to).await {
            connects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let held = async {
                if trickle {
                    let head = "POST /v1/conversations/flood/turn-settled HTTP/1.1\r\n\
                                host: x\r\ncontent-type: application/json\r\n\
                                content-length: 100000\r\n\r\n";
                    stream.write_all(head.as_bytes()).await?;
                    loop {
                        stream.write_all(b" ").await?;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        let mut buf = [0u8; 1024];
                        // Anything read (a 401) or the end: cut.
                        match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf))
                            .await
                        {
                            Ok(_) => return Ok::<(), std::io::Error>(()),
                            Err(_) => continue,
                        }
                    }
                } else {
                    let mut buf = [0u8; 1];
                    let _ = stream.read(&mut buf).await;
                    Ok(())
                }
            };
            tokio::select! {
                _ = held => {}
                () = stop.cancelled() => return,
            }
        }
        // Spread over a second either side, as cut sockets are.
        tokio::time::sleep(
            RECONNECT + Duration::from_millis(n * 7919 % 2000) - Duration::from_secs(1),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_token_holders_are_answered_through_a_socket_flood() {
    let _alone = crate::ONE_AT_A_TIME.lock().await;
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &["--token", TOKEN]).await;
    let to = service.addr;
    let stop = CancellationToken::new();
    let connects = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut flood = tokio::task::JoinSet::new();
    for n in 0..IDLE + TRICKLING {
        flood.spawn(attacker(n, n >= IDLE, to, stop.clone(), connects.clone()));
    }
    // Until the whole flood has connected once.
    let opened = Instant::now();
    while connects.load(std::sync::atomic::Ordering::Relaxed) < IDLE + TRICKLING {
        assert!(
            opened.elapsed() < Duration::from_secs(30),
            "the flood could not connect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Each probe on a connection of its own (no pool), as a supervisor's
    // and a new client's would be.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let started = Instant::now();
    let (mut probes, mut slowest) = (0, Duration::ZERO);
    while started.elapsed() < PROBING {
        for (path, token) in [("/healthz", None), ("/v1/conversations", Some(TOKEN))] {
            let asked = Instant::now();
            let mut request = http.get(service.url(path));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let answer = request.send().await;
            let took = asked.elapsed();
            let status = answer.as_ref().map(|r| r.status().as_u16());
            assert!(
                matches!(status, Ok(200)),
                "{path} during the flood, after {:?}: {status:?}",
                started.elapsed()
            );
            slowest = slowest.max(took);
            if took > Duration::from_millis(500) {
                eprintln!("{path} took {took:?} at {:?}", started.elapsed());
            }
            probes += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let flooded = connects.load(std::sync::atomic::Ordering::Relaxed);
    stop.cancel();
    while flood.join_next().await.is_some() {}
    eprintln!(
        "flood: {IDLE} idle + {TRICKLING} trickling sockets from {ADDRESSES} addresses \
         ({flooded} connects in all); {probes} probes, each answered 200, slowest {slowest:?}"
    );
}

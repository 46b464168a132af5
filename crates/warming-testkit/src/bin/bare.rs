//! `warming-bare`: the baseline of the load benchmark. A bare axum server
//! with the lifecycle routes' shape that parses the body and answers a small
//! JSON state, and does nothing else.
//!
//! Usage: `warming-bare [--listen ADDR]`. Prints `listening on ADDR`.

use axum::extract::Path;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

async fn started(Path(id): Path<String>) -> Json<Value> {
    Json(
        json!({"conversationId": id, "enabled": false, "intervalMs": 240000, "active": true,
        "lastPct": null, "lastExpectedPct": null, "lastWarmAt": null, "nextWarmAt": null,
        "backend": null, "lastError": null, "warmCount": 0}),
    )
}

async fn settled(Path(id): Path<String>, Json(body): Json<Value>) -> Json<Value> {
    let active = body.get("request").is_none();
    Json(
        json!({"conversationId": id, "enabled": false, "intervalMs": 240000, "active": active,
        "lastPct": null, "lastExpectedPct": null, "lastWarmAt": null, "nextWarmAt": null,
        "backend": null, "lastError": null, "warmCount": 0}),
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:0".to_owned();
    while let Some(arg) = args.next() {
        if arg == "--listen" {
            listen = args.next().unwrap_or(listen);
        }
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        let app = Router::new()
            .route("/v1/conversations/{id}/turn-started", post(started))
            .route("/v1/conversations/{id}/turn-settled", post(settled));
        let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
        println!(
            "listening on http://{}",
            listener.local_addr().expect("addr")
        );
        let _ = axum::serve(listener, app).await;
    });
}

//! `/metrics` and the OpenAPI document.

use warming_testkit::{Standin, StandinOptions};

use crate::support::{anthropic_request, eventually, provider_turn, Service};

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_warms_tokens_subscribers_and_cost() {
    let standin = Standin::start(StandinOptions {
        ttl: std::time::Duration::from_millis(600),
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warming.toml");
    std::fs::write(&config, "cache-ttl-ms = 600\n[prices]\nclaude-test = 3.0\n").unwrap();
    let service = Service::start(
        dir.path(),
        &standin.url(),
        &["--config", config.to_str().unwrap()],
    )
    .await;
    let mut surface = service.surface().await;
    surface.subscribe("m").await;

    let request = anthropic_request("metrics");
    provider_turn(&standin.url(), &request).await;
    service.turn_settled("m", &request).await;
    service.enable("m", 250).await;
    eventually(5, "three warms", || async {
        (service.state("m").await["warmCount"].as_u64() >= Some(3)).then_some(())
    })
    .await;
    // The user comes back after more than the TTL: the turn found the cache.
    service.turn_started("m").await;

    let text = reqwest::get(service.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metric(&text, "warming_warms_total{outcome=\"hit\"}").unwrap() >= 3.0,
        "{text}"
    );
    assert!(metric(&text, "warming_cache_read_tokens_total").unwrap() > 0.0);
    assert_eq!(metric(&text, "warming_surface_subscribers"), Some(1.0));
    assert!(metric(&text, "warming_warm_latency_seconds_count").unwrap() >= 3.0);
    assert!(metric(&text, "warming_storage_write_seconds_count").unwrap() >= 1.0);
    assert!(metric(&text, "warming_estimated_warm_cost_dollars_total").unwrap() > 0.0);
    assert!(metric(&text, "warming_estimated_miss_cost_avoided_dollars_total").unwrap() > 0.0);
    // Active now: nothing armed.
    assert_eq!(metric(&text, "warming_armed_conversations"), Some(0.0));
}

//! What the engine remembers: restore, unknown ids, delete, eviction, JSON (behaviour 16).

use crate::prelude::*;

#[test]
fn restore_resumes_enabled_conversations_once_each() {
    let mut h = Harness::new();
    h.warmer.restore(
        h.now,
        [
            restored("future", true, Some(at(30_000))),
            restored("missed", true, Some(Timestamp::from_millis(T0 - 3_600_000))),
            restored("unscheduled", true, None),
            restored("off", false, Some(at(10))),
        ],
    );
    assert_eq!(h.state("future").next_warm_at, Some(at(30_000)));
    assert_eq!(h.state("missed").next_warm_at, Some(at(1_000)));
    assert_eq!(h.state("unscheduled").next_warm_at, Some(at(1_000)));
    assert_eq!(h.state("off").next_warm_at, None);
    assert_eq!(h.state("future").warm_count, 7);
    assert_eq!(h.state("future").backend.as_deref(), Some("b9"));

    // The conversation that missed an hour of warms warms once, not 60 times.
    let effects = h.run_to_deadline();
    let fired: Vec<_> = warms(&effects)
        .iter()
        .map(|w| w.conversation.to_string())
        .collect();
    assert_eq!(fired, ["missed", "unscheduled"]);
    assert_eq!(warms(&effects)[0].preferred_backend.as_deref(), Some("b9"));
}

#[test]
fn an_id_never_seen_reads_as_unknown_and_is_not_created() {
    let mut h = Harness::new();
    let s = h.state("nobody");
    assert!(!s.known);
    assert!(!s.enabled);
    assert_eq!(h.warmer.conversations().count(), 0);
    h.enable("someone");
    assert!(h.state("someone").known);
}

#[test]
fn a_deleted_conversation_is_forgotten_once_the_delete_commits() {
    let mut h = Harness::new();
    h.enable("d");
    h.settle("d", "sys");
    h.drain();
    assert_eq!(h.warmer.delete(h.now, &id("never")), None);

    // A failed delete changes nothing.
    let op = h.warmer.delete(h.now, &id("d")).unwrap();
    assert!(matches!(h.drain()[..], [Out::Write(Write::Delete { .. })]));
    h.warmer.persisted(h.now, op, false);
    assert!(h.state("d").known);
    assert!(h.state("d").next_warm_at.is_some());

    let op = h.warmer.delete(h.now, &id("d")).unwrap();
    h.drain();
    h.warmer.persisted(h.now, op, true);
    let effects = h.drain();
    // Nothing is written for it after its rows are gone.
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Out::Write(Write::Schedule { .. }))),
        "{effects:?}"
    );
    assert!(effects.contains(&Out::Warm(WarmAction::AbortGeneration {
        conversation: id("d")
    })));
    let pushed = notifications(&effects);
    assert!(!pushed[0].known);
    assert_eq!(pushed[0].next_warm_at, None);
    assert!(!h.state("d").known);
    assert_eq!(h.warmer.conversations().count(), 0);
    assert_eq!(h.warmer.poll_timeout(), None);
    // The id can come back as a new conversation.
    h.settle("d", "sys");
    assert!(h.state("d").known);
    assert!(!h.state("d").enabled);
}

#[test]
fn idle_disabled_conversations_leave_memory_and_come_back_restored() {
    let mut h = Harness::new();
    h.settle("off", "sys");
    h.enable("on");
    h.settle("on", "sys");
    h.drain();
    // Not idle long enough yet.
    assert!(h
        .warmer
        .evict_idle(h.now, Duration::from_secs(600))
        .is_empty());
    h.advance(600_000);
    // Warming on: kept. Warming off and idle: evicted.
    let evicted = h.warmer.evict_idle(h.now, Duration::from_secs(600));
    assert_eq!(evicted, [id("off")]);
    assert!(!h.state("off").known);
    assert!(h.state("on").known);
    assert_eq!(h.warmer.conversations().count(), 1);
    // Its slot is reused by the next new conversation...
    h.settle("new", "sys");
    assert_eq!(h.warmer.conversations().count(), 2);
    // ...and it comes back from storage as it was.
    h.warmer.restore(h.now, [restored("off", false, None)]);
    let s = h.state("off");
    assert!(s.known && !s.enabled);
    assert_eq!(s.warm_count, 7);
}

#[test]
fn records_read_back_from_their_json() {
    let mut h = Harness::new();
    h.enable("j");
    h.settle("j", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    let record = h
        .warm_completed(h.now, &id("j"), token, Usage::anthropic(3, 5_000, 0))
        .unwrap();
    // A state's JSON is the transport's (`state_json`), tested there.
    let back: warming_core::WarmRecord =
        serde_json::from_value(serde_json::to_value(&record).unwrap()).unwrap();
    assert_eq!(back, record);
    let bad = serde_json::json!("no spaces allowed");
    assert!(serde_json::from_value::<ConversationId>(bad).is_err());
}

#[test]
fn detached_templates_leave_the_body_to_the_store_and_warms_alike() {
    let mut h = Harness::with_config(
        Config::builder()
            .detach_templates(true)
            .build()
            .expect("a valid config"),
    );
    h.enable("d");
    h.drain();
    let body = template("long system prompt");
    h.warmer
        .turn_settled(h.now, &id("d"), Some(body.clone()), None);
    // The store gets the whole body; the engine keeps only what it decides
    // with.
    let saved = h.drain().into_iter().find_map(|e| match e {
        Out::Write(Write::Template { template, .. }) => Some(template),
        _ => None,
    });
    assert_eq!(saved.unwrap().request_json(), body.request_json());
    let kept = h.warmer.template(&id("d")).unwrap();
    assert!(kept.is_detached());
    assert_eq!(kept.model(), body.model());
    // The warm names the conversation and carries the detached template:
    // the embedder reads the body back from its store.
    let effects = h.run_to_deadline();
    let warm = warms(&effects)[0];
    assert_eq!(warm.conversation, id("d"));
    assert!(warm.template.is_detached());
    // A restored conversation is detached as well.
    let mut restored = Harness::with_config(
        Config::builder()
            .detach_templates(true)
            .build()
            .expect("a valid config"),
    );
    restored.warmer.restore(
        restored.now,
        [Restored {
            conversation: id("r"),
            settings: None,
            template: Some((*body).clone()),
            next_warm_at: None,
            backend: None,
            stats: WarmStats::default(),
            depth: 0,
            gaps: Vec::new(),
            idle_since: None,
        }],
    );
    assert!(restored.warmer.template(&id("r")).unwrap().is_detached());
}

#[test]
fn a_released_conversation_leaves_without_a_write_and_its_warm_is_ignored() {
    let mut h = Harness::new();
    h.enable("c");
    h.settle("c", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    assert!(h.warmer.release(h.now, &id("c")));
    let effects = h.drain();
    assert!(effects.contains(&Out::Warm(WarmAction::Abort {
        conversation: id("c"),
        token
    })));
    assert!(
        !effects.iter().any(|e| matches!(
            e,
            Out::Write(Write::Settings { .. }) | Out::Write(Write::Schedule { .. })
        )),
        "{effects:?}"
    );
    assert!(!h.state("c").known);
    assert_eq!(h.warmer.poll_timeout(), None);
    assert_eq!(h.warm_completed(h.now, &id("c"), token, HIT), None);
    assert!(!h.warmer.release(h.now, &id("c")), "released twice");
}

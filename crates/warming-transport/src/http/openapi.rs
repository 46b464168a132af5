//! The OpenAPI 3 document of the HTTP API (`GET /v1/openapi.json`), built
//! from one table of operations that a test checks against the router.

use serde_json::{json, Map, Value};

/// One documented operation.
pub struct Operation {
    /// HTTP method, lowercase.
    pub method: &'static str,
    /// Path in OpenAPI form (`{id}` for the conversation id).
    pub path: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Schema name of the JSON body, if any.
    pub body: Option<&'static str>,
    /// Schema name of the 200 answer.
    pub answer: &'static str,
}

/// Every operation of the API.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/",
        summary: "The dashboard page (HTML)",
        body: None,
        answer: "Text",
    },
    Operation {
        method: "post",
        path: "/proxy/anthropic/v1/messages",
        summary: "Proxy mode: an Anthropic SDK's base URL is /proxy/anthropic",
        body: Some("Object"),
        answer: "Object",
    },
    Operation {
        method: "post",
        path: "/proxy/openai/v1/chat/completions",
        summary: "Proxy mode: an OpenAI SDK's base URL is /proxy/openai/v1",
        body: Some("Object"),
        answer: "Object",
    },
    Operation {
        method: "get",
        path: "/healthz",
        summary: "Liveness: 503 only when the driver stopped; `degraded` while the database does not answer or warms are paused",
        body: None,
        answer: "Health",
    },
    Operation {
        method: "get",
        path: "/readyz",
        summary: "Readiness: 503 while the driver is stopped, the database does not answer or warms are paused",
        body: None,
        answer: "Health",
    },
    Operation {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics (text)",
        body: None,
        answer: "Text",
    },
    Operation {
        method: "get",
        path: "/v1/openapi.json",
        summary: "This document",
        body: None,
        answer: "Object",
    },
    Operation {
        method: "get",
        path: "/v1/conversations",
        summary: "Known conversations, a page at a time (?limit=1..1000, default 100; ?after=CURSOR; ?enabled=true|false; ?armed=true; ?stopped=true; ?q=part of an id)",
        body: None,
        answer: "ConversationList",
    },
    Operation {
        method: "get",
        path: "/v1/conversations/{id}",
        summary: "A conversation's state",
        body: None,
        answer: "ConversationState",
    },
    Operation {
        method: "post",
        path: "/v1/conversations/{id}/waiting",
        summary: "The running turn waits on a tool or a person: warmed like idle until the next turn start or settle (409 without a running turn)",
        body: None,
        answer: "ConversationState",
    },
    Operation {
        method: "delete",
        path: "/v1/conversations/{id}",
        summary: "Delete a conversation and its history; answers its default state",
        body: None,
        answer: "ConversationState",
    },
    Operation {
        method: "get",
        path: "/v1/conversations/{id}/history",
        summary: "Past warms, newest first (?limit=1..1000, default 50)",
        body: None,
        answer: "History",
    },
    Operation {
        method: "post",
        path: "/v1/conversations/{id}/turn-started",
        summary: "A turn started: pause warming",
        body: None,
        answer: "ConversationState",
    },
    Operation {
        method: "post",
        path: "/v1/conversations/{id}/turn-settled",
        summary: "A turn settled: store the template, arm if enabled",
        body: Some("TurnSettled"),
        answer: "ConversationState",
    },
    Operation {
        method: "post",
        path: "/v1/conversations/{id}/warm",
        summary: "Warm now; the cycle restarts on success",
        body: None,
        answer: "HistoryEntry",
    },
    Operation {
        method: "post",
        path: "/v1/conversations/{id}/close",
        summary: "Closed by the user: warming off, generation aborted",
        body: None,
        answer: "ConversationState",
    },
    Operation {
        method: "put",
        path: "/v1/conversations/{id}/settings",
        summary: "Change settings (idempotent)",
        body: Some("Settings"),
        answer: "SettingsAnswer",
    },
    Operation {
        method: "post",
        path: "/v1/events",
        summary: "Provider runtime events, one or an array",
        body: Some("Events"),
        answer: "EventsAnswer",
    },
    Operation {
        method: "get",
        path: "/v1/surface",
        summary: "WebSocket surface (upgrade)",
        body: None,
        answer: "Object",
    },
];

fn nullable(kind: &str) -> Value {
    json!({"type": [kind, "null"]})
}

fn schemas() -> Value {
    json!({
        "Health": {"type": "object", "properties": {"status": {"type": "string"}}},
        "Text": {"type": "string"},
        "Object": {"type": "object"},
        "ConversationState": {
            "type": "object",
            "required": ["conversationId", "enabled", "intervalMs", "active", "lastPct", "lastExpectedPct",
                         "lastWarmAt", "nextWarmAt", "backend", "lastError", "warmCount"],
            "properties": {
                "conversationId": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
                "known": {"type": "boolean", "description": "false for an id never seen (nothing is created)"},
                "enabled": {"type": "boolean"},
                "intervalMs": {"type": "integer"},
                "active": {"type": "boolean"},
                "lastPct": nullable("number"),
                "lastExpectedPct": nullable("number"),
                "lastWarmAt": nullable("integer"),
                "nextWarmAt": nullable("integer"),
                "backend": nullable("string"),
                "lastError": nullable("string"),
                "warmCount": {"type": "integer"},
                "policy": {"type": "string"},
                "stoppedReason": nullable("string"),
                "stop": {"type": ["object", "null"], "required": ["code"],
                    "description": "stoppedReason for programs, tagged by code",
                    "properties": {"code": {"type": "string", "enum": ["idleCap", "pingLimit",
                        "breakevenReached", "refused", "nothingCached", "belowMinimum", "unlikelyReturn"]}}}
            }
        },
        "SettingsAnswer": {"allOf": [{"$ref": "#/components/schemas/ConversationState"},
            {"type": "object", "properties": {"notes": {"type": "array", "items": {"type": "string"},
                "description": "What was changed from what was asked, e.g. a clamped interval"}}}]},
        "ConversationList": {"type": "object", "properties": {
            "conversations": {"type": "array", "items": {"$ref": "#/components/schemas/ConversationState"}},
            "next": {"type": ["string", "null"], "description": "Cursor of the next page (?after=), null after the last"}}},
        "HistoryEntry": {"type": "object", "properties": {
            "conversationId": {"type": "string"},
            "dueAt": {"type": "integer"}, "startedAt": {"type": "integer"}, "finishedAt": {"type": "integer"},
            "latencyMs": {"type": "integer"},
            "trigger": {"enum": ["scheduled", "retry", "manual", "turn"]},
            "outcome": {"enum": ["hit", "expired", "cold", "uncached", "failed", "stopped", "upgraded", "resident", "saved"]},
            "expired": {"type": "boolean"},
            "usage": {"type": ["object", "null"], "properties": {
                "inputTokens": {"type": "integer"}, "cacheReadTokens": {"type": "integer"},
                "cacheWriteTokens": {"type": "integer"}, "outputTokens": {"type": "integer"}}},
            "kind": {"type": ["string", "null"], "enum": ["zero-output", "one-token", "thinking-kept", "prefix-only", "minimum-output", "extended", "checked", "saved", null],
                "description": "Which request the warm sent"},
            "pct": nullable("number"), "expectedPct": nullable("number"),
            "backend": nullable("string"), "error": nullable("string")}},
        "History": {"type": "object", "properties": {
            "conversationId": {"type": "string"},
            "history": {"type": "array", "items": {"$ref": "#/components/schemas/HistoryEntry"}}}},
        "TurnSettled": {"type": "object", "required": ["request"], "properties": {
            "request": {"type": "object", "description": "The provider request body of the settled turn"},
            "model": {"type": "string"}, "cwd": {"type": "string"},
            "requestStartedAt": {"type": "integer", "description": "When the turn's last provider request started (epoch ms)"}}},
        "Settings": {"type": "object", "additionalProperties": false, "properties": {
            "enabled": {"type": "boolean"}, "intervalMs": {"type": "number"},
            "policy": {"type": ["string", "null"], "description": "fixed, pings:N, breakeven, adaptive; null for the server's"}}},
        "Event": {"type": "object", "required": ["type", "threadId"], "properties": {
            "type": {"type": "string"}, "threadId": {"type": "string"}, "turnId": {"type": "string"},
            "createdAt": {"type": "string", "format": "date-time"}, "payload": {"type": "object"}}},
        "Events": {"oneOf": [{"$ref": "#/components/schemas/Event"},
                              {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}]},
        "EventsAnswer": {"type": "object", "properties": {
            "applied": {"type": "integer"}, "ignored": {"type": "integer"}}},
        "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
            "code": {"enum": ["bad_request", "not_found", "unauthorized", "conflict",
                              "payload_too_large", "upstream", "storage",
                              "storage_unavailable"]},
            "message": {"type": "string"}}}}}
    })
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The whole document.
#[must_use]
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in OPERATIONS {
        let mut operation = json!({
            "summary": op.summary,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": reference(op.answer)}}},
                "default": {"description": "An error", "content": {"application/json": {"schema": reference("Error")}}}
            }
        });
        if op.path.contains("{id}") {
            operation["parameters"] = json!([{"name": "id", "in": "path", "required": true,
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}}]);
        }
        if let Some(body) = op.body {
            operation["requestBody"] = json!({"required": true,
                "content": {"application/json": {"schema": reference(body)}}});
        }
        let path = paths.entry(op.path).or_insert_with(|| json!({}));
        path[op.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "warming", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Keeps LLM prompt caches warm. See docs/API.md."},
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "paths": paths
    })
}

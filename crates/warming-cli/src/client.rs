//! A client of a running `warming serve`, for the command line and for apps.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use warming_core::{ConversationState, WarmRecord};

pub use warming_service::{format_duration, parse_duration};
use warming_transport::state_json::StateJson;

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached.
    #[error(
        "no warming server at {url} ({reason}): start one with `warming serve` or set \
         WARMING_SERVER (or --server)"
    )]
    Unreachable {
        /// The server's base URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server has a token and none was sent.
    #[error("the server at {url} needs a token: set WARMING_TOKEN (or --token) to its --token")]
    Unauthorized {
        /// The server's base URL.
        url: String,
    },
    /// The server has a token and the one sent is not it.
    #[error(
        "the server at {url} refused the token given (WARMING_TOKEN or --token): it is not the \
         server's --token"
    )]
    WrongToken {
        /// The server's base URL.
        url: String,
    },
    /// The server answered with an error.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// The contract's error code.
        code: String,
        /// The server's explanation.
        message: String,
    },
    /// The server answered something that is not the API.
    #[error("unexpected answer from warming: {0}")]
    Protocol(String),
}

/// A settings change's answer: the stored state, and what was changed from
/// what was asked (a clamped interval).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SettingsAnswer {
    /// The conversation's state after the change.
    #[serde(flatten, with = "warming_transport::state_json")]
    pub state: ConversationState,
    /// Notes such as "intervalMs clamped to 10000 (server minimum)".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The clamp as data: `{"requestedMs", "appliedMs", "bound"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clamped: Option<serde_json::Value>,
}

/// A history entry: the warm's record and its latency.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The record.
    #[serde(flatten)]
    pub record: WarmRecord,
    /// Milliseconds from sending the warm to its end.
    pub latency_ms: u64,
}

/// Talks to one server.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:8517`; a
    /// bare `host:port` means `http://host:port`).
    #[must_use]
    pub fn new(base: &str, token: Option<String>) -> Self {
        let base = if base.contains("://") {
            base.to_owned()
        } else {
            format!("http://{base}")
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            url: self.base.clone(),
            reason: warming_service::root_cause(e),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| self.unreachable(&e))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|_| ClientError::Protocol(text.chars().take(200).collect()))?;
        if status.is_success() {
            return Ok(value);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            let url = self.base.clone();
            return Err(if self.token.is_some() {
                ClientError::WrongToken { url }
            } else {
                ClientError::Unauthorized { url }
            });
        }
        let field = |name: &str| value["error"][name].as_str().unwrap_or("").to_owned();
        Err(ClientError::Api {
            status: status.as_u16(),
            code: field("code"),
            message: field("message"),
        })
    }

    /// A call whose answer is read as `T`.
    async fn typed<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, ClientError> {
        let value = self.call(method, path, body).await?;
        serde_json::from_value(value).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Every known conversation, fetched a page at a time.
    ///
    /// # Errors
    /// [`ClientError`] when the server is unreachable or answers an error.
    pub async fn list(&self) -> Result<Vec<ConversationState>, ClientError> {
        #[derive(serde::Deserialize)]
        struct Page {
            conversations: Vec<StateJson>,
            next: Option<String>,
        }
        let mut all = Vec::new();
        let mut path = "/v1/conversations?limit=1000".to_owned();
        loop {
            let page: Page = self.typed(Method::GET, &path, None).await?;
            all.extend(page.conversations.into_iter().map(ConversationState::from));
            match page.next {
                Some(next) => path = format!("/v1/conversations?limit=1000&after={next}"),
                None => return Ok(all),
            }
        }
    }

    /// One conversation's state.
    ///
    /// # Errors
    /// As [`list`](Self::list).
    pub async fn status(&self, id: &str) -> Result<ConversationState, ClientError> {
        self.typed::<StateJson>(Method::GET, &format!("/v1/conversations/{id}"), None)
            .await
            .map(ConversationState::from)
    }

    /// Changes settings.
    ///
    /// # Errors
    /// As [`list`](Self::list).
    pub async fn settings(
        &self,
        id: &str,
        enabled: Option<bool>,
        interval_ms: Option<u64>,
    ) -> Result<SettingsAnswer, ClientError> {
        let mut body = json!({});
        if let Some(enabled) = enabled {
            body["enabled"] = json!(enabled);
        }
        if let Some(ms) = interval_ms {
            body["intervalMs"] = json!(ms);
        }
        self.typed(
            Method::PUT,
            &format!("/v1/conversations/{id}/settings"),
            Some(body),
        )
        .await
    }

    /// Sets the conversation's policy (`fixed`, `pings:N`, `breakeven`,
    /// `adaptive`), or `None` to follow the server's.
    ///
    /// # Errors
    /// As [`list`](Self::list).
    pub async fn policy(
        &self,
        id: &str,
        policy: Option<&str>,
    ) -> Result<SettingsAnswer, ClientError> {
        self.typed(
            Method::PUT,
            &format!("/v1/conversations/{id}/settings"),
            Some(json!({ "policy": policy })),
        )
        .await
    }

    /// Warms now; answers the warm's history entry.
    ///
    /// # Errors
    /// As [`list`](Self::list).
    pub async fn warm(&self, id: &str) -> Result<HistoryEntry, ClientError> {
        self.typed(Method::POST, &format!("/v1/conversations/{id}/warm"), None)
            .await
    }

    /// Deletes the conversation and its history.
    ///
    /// # Errors
    /// As [`list`](Self::list).
    pub async fn delete(&self, id: &str) -> Result<ConversationState, ClientError> {
        self.typed::<StateJson>(Method::DELETE, &format!("/v1/conversations/{id}"), None)
            .await
            .map(ConversationState::from)
    }

    /// Closes the conversation.
    ///
    /// # Errors
    /// As [`list`](Self::list).
    pub async fn close(&self, id: &str) -> Result<ConversationState, ClientError> {
        self.typed::<StateJson>(Method::POST, &format!("/v1/conversations/{id}/close"), None)
            .await
            .map(ConversationState::from)
    }

    /// Past warms, newest first.
    ///
    /// # Errors
    /// As [`list`](Self::list).
    pub async fn history(&self, id: &str, limit: usize) -> Result<Vec<HistoryEntry>, ClientError> {
        #[derive(serde::Deserialize)]
        struct Page {
            history: Vec<HistoryEntry>,
        }
        let page: Page = self
            .typed(
                Method::GET,
                &format!("/v1/conversations/{id}/history?limit={limit}"),
                None,
            )
            .await?;
        Ok(page.history)
    }

    /// Subscribes to a conversation's surface and calls `on_message` with
    /// every message until the server closes the socket.
    ///
    /// # Errors
    /// [`ClientError`] when the socket cannot be opened or breaks.
    pub async fn watch(
        &self,
        id: &str,
        mut on_message: impl FnMut(&Value),
    ) -> Result<(), ClientError> {
        let ws_base = self.base.replacen("http", "ws", 1);
        let mut url = format!("{ws_base}/v1/surface");
        if let Some(token) = &self.token {
            url.push_str(&format!("?token={token}"));
        }
        let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                reason: e.to_string(),
            })?;
        let subscribe =
            json!({"type": "subscribe", "surfaceId": "cache-warming", "conversationId": id});
        futures_util::SinkExt::send(&mut socket, Message::Text(subscribe.to_string().into()))
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        while let Some(message) = socket.next().await {
            match message.map_err(|e| ClientError::Protocol(e.to_string()))? {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(text.as_str())
                        .map_err(|e| ClientError::Protocol(e.to_string()))?;
                    if value["type"] == "error" {
                        return Err(ClientError::Api {
                            status: 400,
                            code: "bad_request".into(),
                            message: value["message"].as_str().unwrap_or("").to_owned(),
                        });
                    }
                    on_message(&value);
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        Ok(())
    }
}

//! Language-model adapters behind the actors' [`LlmProvider`] port, and the choice between them.

pub mod openai;

use std::sync::Arc;
use std::time::Duration;

use fleety_actors::llm::offline::OfflineProvider;
use fleety_actors::llm::LlmProvider;

use crate::config::{HttpUrl, LlmProviderKind, LlmSettings};

/// How to reach an OpenAI-compatible `/v1/chat/completions` endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Up to and including `/v1`, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8081/v1`.
    pub base_url: HttpUrl,
    /// Sent as a bearer token when not empty.
    pub api_key: crate::config::Secret,
    pub model: String,
    /// Time to open the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Time from sending the request to the first streamed event.
    pub first_token_timeout: Duration,
    /// Longest silence allowed between two streamed events once the answer has begun.
    pub idle_timeout: Duration,
}

/// The provider the settings ask for: `openai` when a base URL is set (or asked for
/// explicitly), otherwise `offline`.
pub fn from_settings(llm: &LlmSettings) -> anyhow::Result<Arc<dyn LlmProvider>> {
    Ok(match (llm.provider, &llm.base_url) {
        (LlmProviderKind::Offline, _) | (LlmProviderKind::Auto, None) => Arc::new(OfflineProvider),
        // Loaded settings cannot ask for this (see `Settings::validate`); built ones can.
        (LlmProviderKind::Openai, None) => {
            anyhow::bail!("the language model's base URL is empty")
        }
        (LlmProviderKind::Auto | LlmProviderKind::Openai, Some(base_url)) => {
            Arc::new(openai::OpenAiProvider::new(OpenAiConfig {
                base_url: base_url.clone(),
                api_key: llm.api_key.clone(),
                model: llm.model.clone(),
                connect_timeout: llm.connect_timeout,
                first_token_timeout: llm.first_token_timeout,
                idle_timeout: llm.idle_timeout,
            })?)
        }
    })
}

//! `[auth]`: how tokens are verified and which scopes open private channels.

use std::{collections::BTreeMap, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::messages::Channel;

/// The development secret; using it logs a warning.
pub const DEV_JWT_SECRET: &str = "dev-secret-change-me";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret (`TICKGATE_JWT_SECRET`). Ignored when `public_key_file` is set.
    pub jwt_secret: String,
    /// PEM public key for RS256 or ES256 tokens.
    pub public_key_file: Option<PathBuf>,
    /// `RS256` or `ES256` with `public_key_file`; `HS256` otherwise.
    pub algorithm: String,
    /// Required `aud` claim, when set.
    pub audience: Option<String>,
    /// Required `iss` claim, when set.
    pub issuer: Option<String>,
    /// Private channel name -> scope a token must carry to subscribe to it.
    /// Empty: a valid token opens every private channel of its `sub`.
    pub channel_scopes: BTreeMap<String, String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: DEV_JWT_SECRET.to_owned(),
            public_key_file: None,
            algorithm: "HS256".to_owned(),
            audience: None,
            issuer: None,
            channel_scopes: BTreeMap::new(),
        }
    }
}

impl AuthConfig {
    /// The channel scopes name private channels.
    pub(super) fn check_scopes(&self) -> Result<(), String> {
        for name in self.channel_scopes.keys() {
            match name.parse::<Channel>() {
                Ok(channel) if channel.is_private() => {}
                _ => return Err(format!("auth.channel_scopes.{name}: not a private channel")),
            }
        }
        Ok(())
    }

    /// The algorithm is known and has its key.
    pub(super) fn check_algorithm(&self) -> Result<(), String> {
        if !matches!(self.algorithm.as_str(), "HS256" | "RS256" | "ES256") {
            return Err("auth.algorithm must be HS256, RS256 or ES256".into());
        }
        if self.algorithm != "HS256" && self.public_key_file.is_none() {
            return Err(format!(
                "auth.algorithm {} needs auth.public_key_file",
                self.algorithm
            ));
        }
        Ok(())
    }
}

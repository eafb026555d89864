//! JWT authentication: verifies the tokens clients send in `auth` frames and
//! mints development tokens (`tickgate token`).
//!
//! Tokens follow seed 000's format: `sub` (the user), `exp`, `iat`, `scopes`;
//! `nbf`, `aud` and `iss` are honoured when present or configured. HS256 uses
//! the configured secret; RS256 and ES256 a PEM public key.

use std::{collections::HashMap, sync::Arc};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{config::AuthConfig, event::UserId, spec::messages::Channel};

/// Longest accepted `sub`.
const MAX_SUB_LEN: usize = 256;

/// The claims tickgate reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// Who a verified token says the client is.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub user: UserId,
    pub expires_at: jiff::Timestamp,
    pub scopes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("token rejected: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("token rejected: sub must be 1 to {MAX_SUB_LEN} characters")]
    BadSubject,
    #[error("token rejected: exp is out of range")]
    BadExpiry,
    #[error("cannot read public key {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid auth configuration: {0}")]
    Config(String),
}

/// Verifies tokens and decides which private channels they open.
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
    channel_scopes: HashMap<Channel, String>,
}

impl Authenticator {
    /// # Errors
    /// An unreadable or invalid public key, or an unknown algorithm.
    pub fn from_config(config: &AuthConfig) -> Result<Arc<Self>, AuthError> {
        let (algorithm, key) = match &config.public_key_file {
            None => (
                Algorithm::HS256,
                DecodingKey::from_secret(config.jwt_secret.as_bytes()),
            ),
            Some(path) => {
                let pem = std::fs::read(path).map_err(|source| AuthError::KeyFile {
                    path: path.display().to_string(),
                    source,
                })?;
                match config.algorithm.as_str() {
                    "RS256" => (Algorithm::RS256, DecodingKey::from_rsa_pem(&pem)?),
                    "ES256" => (Algorithm::ES256, DecodingKey::from_ec_pem(&pem)?),
                    other => {
                        return Err(AuthError::Config(format!(
                            "algorithm {other} cannot use a public key; use RS256 or ES256"
                        )));
                    }
                }
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &config.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
        }
        let channel_scopes = config
            .channel_scopes
            .iter()
            .filter_map(|(channel, scope)| Some((channel.parse().ok()?, scope.clone())))
            .collect();
        Ok(Arc::new(Self {
            key,
            validation,
            channel_scopes,
        }))
    }

    /// # Errors
    /// A bad signature, an expired or not-yet-valid token, a wrong audience
    /// or issuer, or a missing or unusable `sub`.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)?;
        let claims = data.claims;
        if claims.sub.is_empty() || claims.sub.chars().count() > MAX_SUB_LEN {
            return Err(AuthError::BadSubject);
        }
        let expires_at = i64::try_from(claims.exp)
            .ok()
            .and_then(|exp| jiff::Timestamp::from_second(exp).ok())
            .ok_or(AuthError::BadExpiry)?;
        Ok(Identity {
            user: claims.sub.into(),
            expires_at,
            scopes: claims.scopes,
        })
    }

    /// The scope `channel` requires, if a rule names one.
    pub fn required_scope(&self, channel: Channel) -> Option<&str> {
        self.channel_scopes.get(&channel).map(String::as_str)
    }

    /// Whether `identity` may subscribe to the private `channel`.
    pub fn allows(&self, identity: &Identity, channel: Channel) -> bool {
        match self.required_scope(channel) {
            None => true,
            Some(scope) => identity.scopes.iter().any(|s| s == scope),
        }
    }
}

/// Mints an HS256 development token.
///
/// # Errors
/// Only if signing fails.
pub fn mint(
    secret: &str,
    sub: &str,
    scopes: Vec<String>,
    ttl_seconds: u64,
) -> Result<String, AuthError> {
    let now = jiff::Timestamp::now().as_second().max(0) as u64;
    let claims = Claims {
        sub: sub.to_owned(),
        exp: now.saturating_add(ttl_seconds),
        iat: Some(now),
        nbf: None,
        scopes,
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator(config: AuthConfig) -> Arc<Authenticator> {
        Authenticator::from_config(&config).unwrap()
    }

    fn sign(secret: &str, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn now() -> u64 {
        jiff::Timestamp::now().as_second() as u64
    }

    #[test]
    fn minted_token_verifies() {
        let auth = authenticator(AuthConfig::default());
        let token = mint(
            "dev-secret-change-me",
            "user_123",
            vec!["a:read".into()],
            60,
        )
        .unwrap();
        let identity = auth.verify(&token).unwrap();
        assert_eq!(&*identity.user, "user_123");
        assert_eq!(identity.scopes, ["a:read"]);
    }

    #[test]
    fn rejects_bad_tokens() {
        let auth = authenticator(AuthConfig::default());
        let secret = "dev-secret-change-me";
        let cases = [
            (
                "wrong secret",
                sign("other", serde_json::json!({"sub": "u", "exp": now() + 60})),
            ),
            (
                "expired",
                sign(secret, serde_json::json!({"sub": "u", "exp": now() - 1})),
            ),
            (
                "not yet valid",
                sign(
                    secret,
                    serde_json::json!({"sub": "u", "exp": now() + 60, "nbf": now() + 30}),
                ),
            ),
            (
                "no sub",
                sign(secret, serde_json::json!({"exp": now() + 60})),
            ),
            (
                "empty sub",
                sign(secret, serde_json::json!({"sub": "", "exp": now() + 60})),
            ),
            ("no exp", sign(secret, serde_json::json!({"sub": "u"}))),
            ("garbage", "not.a.token".to_owned()),
            ("seed mock", "longer-than-ten-characters".to_owned()),
        ];
        for (name, token) in cases {
            assert!(auth.verify(&token).is_err(), "{name} was accepted");
        }
    }

    #[test]
    fn audience_and_issuer_are_checked_when_configured() {
        let auth = authenticator(AuthConfig {
            audience: Some("tickgate".into()),
            issuer: Some("idp".into()),
            ..AuthConfig::default()
        });
        let secret = "dev-secret-change-me";
        let good = sign(
            secret,
            serde_json::json!({"sub": "u", "exp": now() + 60, "aud": "tickgate", "iss": "idp"}),
        );
        assert!(auth.verify(&good).is_ok());
        let wrong_aud = sign(
            secret,
            serde_json::json!({"sub": "u", "exp": now() + 60, "aud": "x", "iss": "idp"}),
        );
        assert!(auth.verify(&wrong_aud).is_err());
        let wrong_iss = sign(
            secret,
            serde_json::json!({"sub": "u", "exp": now() + 60, "aud": "tickgate", "iss": "x"}),
        );
        assert!(auth.verify(&wrong_iss).is_err());
    }

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    fn sign_with(algorithm: Algorithm, private: &str, sub: &str) -> String {
        let pem = std::fs::read(fixture(private)).unwrap();
        let key = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
            _ => EncodingKey::from_ec_pem(&pem).unwrap(),
        };
        let claims = serde_json::json!({"sub": sub, "exp": now() + 60, "scopes": ["x"]});
        jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).unwrap()
    }

    #[test]
    fn public_key_algorithms_verify_their_own_tokens_only() {
        for (algorithm, name, public, private) in [
            (
                Algorithm::RS256,
                "RS256",
                "rs256-public.pem",
                "rs256-private.pem",
            ),
            (
                Algorithm::ES256,
                "ES256",
                "es256-public.pem",
                "es256-private.pem",
            ),
        ] {
            let auth = authenticator(AuthConfig {
                algorithm: name.into(),
                public_key_file: Some(fixture(public)),
                ..AuthConfig::default()
            });
            let identity = auth
                .verify(&sign_with(algorithm, private, "keyed"))
                .unwrap();
            assert_eq!(&*identity.user, "keyed", "{name}");
            let hs256 = mint("dev-secret-change-me", "keyed", vec![], 60).unwrap();
            assert!(auth.verify(&hs256).is_err(), "{name} refuses HS256 tokens");
        }
        let es_key_as_rs = AuthConfig {
            algorithm: "RS256".into(),
            public_key_file: Some(fixture("es256-public.pem")),
            ..AuthConfig::default()
        };
        assert!(
            Authenticator::from_config(&es_key_as_rs).is_err(),
            "a key of the wrong kind is refused"
        );
        let missing = AuthConfig {
            algorithm: "ES256".into(),
            public_key_file: Some(fixture("missing.pem")),
            ..AuthConfig::default()
        };
        assert!(matches!(
            Authenticator::from_config(&missing),
            Err(AuthError::KeyFile { .. })
        ));
    }

    #[test]
    fn scope_rules_restrict_channels() {
        let mut config = AuthConfig::default();
        config
            .channel_scopes
            .insert("orders".into(), "trading:read".into());
        let auth = authenticator(config);
        let identity = |scopes: &[&str]| Identity {
            user: "u".into(),
            expires_at: jiff::Timestamp::now(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        };
        assert!(auth.allows(&identity(&[]), Channel::Account));
        assert!(!auth.allows(&identity(&[]), Channel::Orders));
        assert!(auth.allows(&identity(&["trading:read"]), Channel::Orders));
    }
}

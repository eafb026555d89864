//! The symbols the gateway knows: every symbol a source has produced.
//! "All symbols" subscriptions and `welcome` read it; it is also where
//! symbols are validated, so every symbol on the wire satisfies the schema.

use std::collections::BTreeMap;

use parking_lot::RwLock;

use crate::event::Symbol;

/// Longest symbol (the `Symbol` schema's `maxLength`).
pub const MAX_SYMBOL_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid symbol {0:?}: use 1 to 32 of A-Z, 0-9 and . / _ : - ^ =")]
pub struct InvalidSymbol(pub String);

/// Known symbols, upper-case, looked up case-insensitively.
#[derive(Default)]
pub struct Symbols {
    by_name: RwLock<BTreeMap<String, Symbol>>,
}

impl Symbols {
    /// The canonical (upper-case) form of `name`, if it is a valid symbol.
    ///
    /// # Errors
    /// `InvalidSymbol` when empty, too long or with other characters.
    pub fn canonical(name: &str) -> Result<String, InvalidSymbol> {
        let valid = !name.is_empty()
            && name.len() <= MAX_SYMBOL_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"./_:-^=".contains(&b));
        if valid {
            Ok(name.to_ascii_uppercase())
        } else {
            Err(InvalidSymbol(name.chars().take(40).collect()))
        }
    }

    /// The known symbol named `name` (any case).
    pub fn get(&self, name: &str) -> Option<Symbol> {
        let name = Self::canonical(name).ok()?;
        self.by_name.read().get(&name).cloned()
    }

    /// Adds a symbol (or returns the known one).
    ///
    /// # Errors
    /// `InvalidSymbol` as for `canonical`.
    pub fn insert(&self, name: &str) -> Result<Symbol, InvalidSymbol> {
        let name = Self::canonical(name)?;
        if let Some(symbol) = self.by_name.read().get(&name) {
            return Ok(symbol.clone());
        }
        let mut by_name = self.by_name.write();
        Ok(by_name
            .entry(name.clone())
            .or_insert_with(|| name.into())
            .clone())
    }

    /// Every known symbol, sorted.
    pub fn all(&self) -> Vec<Symbol> {
        self.by_name.read().values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_case_insensitive_and_canonical() {
        let symbols = Symbols::default();
        assert_eq!(&*symbols.insert("aapl").unwrap(), "AAPL");
        assert_eq!(symbols.get("Aapl").as_deref(), Some("AAPL"));
        assert_eq!(symbols.get("MSFT"), None);
        assert_eq!(&*symbols.insert("btc/usdt").unwrap(), "BTC/USDT");
    }

    #[test]
    fn rejects_invalid_symbols() {
        for bad in ["", "A B", "\"", &"X".repeat(33), "ÄPPL"] {
            assert!(Symbols::canonical(bad).is_err(), "{bad:?}");
        }
        assert!(Symbols::canonical(&"X".repeat(32)).is_ok());
    }
}

//! Content digests: the only identity of an artifact that a registry
//! cannot move.
//!
//! Only `sha256` is accepted. The distribution spec allows `sha512` and
//! registered others, but every registry and tool in the wasm ecosystem
//! writes sha256, and a pin the crate cannot check must be refused rather
//! than silently ignored. A [`Digest`] is always in canonical form
//! (lowercase hex), so comparing two digests as strings is comparing the
//! content they name.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::OciError;

const PREFIX: &str = "sha256:";

/// A `sha256:<64 lowercase hex>` content digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// The digest of `bytes`, as a registry computes it for a blob or a
    /// manifest.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    pub(crate) fn from_hasher(hasher: Sha256) -> Self {
        Self(format!("{PREFIX}{}", hex::encode(hasher.finalize())))
    }

    /// `sha256:…`, as written in manifests, URLs and pins.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits without the algorithm, safe as a file name.
    pub fn hex(&self) -> &str {
        &self.0[PREFIX.len()..]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Digest {
    type Err = OciError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| OciError::InvalidDigest {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        let Some((algorithm, hex)) = s.split_once(':') else {
            return Err(bad("expected sha256:<64 hex digits>"));
        };
        if algorithm != "sha256" {
            return Err(OciError::InvalidDigest {
                input: s.to_owned(),
                reason: format!("unsupported algorithm {algorithm:?}; only sha256 can be verified"),
            });
        }
        if hex.len() != 64 {
            return Err(OciError::InvalidDigest {
                input: s.to_owned(),
                reason: format!(
                    "a sha256 digest has 64 hex digits, this one has {}",
                    hex.len()
                ),
            });
        }
        // Uppercase is refused rather than folded: registries compare
        // digests as strings, so `sha256:AB…` would name nothing there.
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad("the hex digits must be 0-9 and lowercase a-f"));
        }
        Ok(Self(s.to_owned()))
    }
}

impl TryFrom<String> for Digest {
    type Error = OciError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> Self {
        d.0
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input_is_the_well_known_one() {
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parse_round_trips_and_exposes_hex() {
        let d = Digest::of(b"x");
        let parsed: Digest = d.as_str().parse().unwrap();
        assert_eq!(parsed, d);
        assert_eq!(parsed.hex().len(), 64);
        assert_eq!(parsed.to_string(), d.as_str());
    }

    #[test]
    fn refuses_other_algorithms_short_and_uppercase() {
        let upper = format!("sha256:{}", "A".repeat(64));
        for (input, needle) in [
            ("sha512:abcd", "only sha256"),
            ("sha256:abcd", "this one has 4"),
            ("abcd", "expected sha256:"),
            (upper.as_str(), "lowercase"),
        ] {
            let err = input.parse::<Digest>().unwrap_err().to_string();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }
}

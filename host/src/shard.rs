//! Scale-out across replicas: `--shard INDEX/COUNT` makes this process run
//! only its share of the scheduled probes.
//!
//! Each probe goes to the shard with the highest score
//! `SHA-256(shard index, probe name)` (rendezvous hashing). The owner of a
//! probe depends only on its name and the shard count; going from N to N+1
//! replicas moves about 1/(N+1) of the probes, all of them to the new
//! replica. Replicas never talk to each other: Prometheus scrapes each.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// This replica's place among `count` replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// Why a `--shard` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("shard {0:?} must be INDEX/COUNT, e.g. 0/3 (or ordinal/3 in a StatefulSet)")]
    Syntax(String),
    #[error("shard {index}/{count}: INDEX must be below COUNT (counting from 0)")]
    OutOfRange { index: u32, count: u32 },
    #[error("shard count must be at least 1")]
    NoShards,
    #[error(
        "shard ordinal/{0}: the host name {1:?} does not end in -NUMBER (as StatefulSet pods do)"
    )]
    NoOrdinal(u32, String),
}

impl Shard {
    pub fn new(index: u32, count: u32) -> Result<Shard, ShardError> {
        if count == 0 {
            return Err(ShardError::NoShards);
        }
        if index >= count {
            return Err(ShardError::OutOfRange { index, count });
        }
        Ok(Shard { index, count })
    }

    /// Parses `INDEX/COUNT`; an INDEX of `ordinal` is the trailing number
    /// of `hostname` (`wasmprobe-2` → 2).
    pub fn parse(text: &str, hostname: &str) -> Result<Shard, ShardError> {
        let syntax = || ShardError::Syntax(text.to_string());
        let (index, count) = text.trim().split_once('/').ok_or_else(syntax)?;
        let count: u32 = count.trim().parse().map_err(|_| syntax())?;
        let index = match index.trim() {
            "ordinal" => hostname
                .rsplit_once('-')
                .and_then(|(_, n)| n.parse().ok())
                .ok_or_else(|| ShardError::NoOrdinal(count, hostname.to_string()))?,
            i => i.parse().map_err(|_| syntax())?,
        };
        Shard::new(index, count)
    }

    /// The shard that runs the probe `name`, among `count`.
    pub fn owner(name: &str, count: u32) -> u32 {
        (0..count)
            .max_by_key(|i| score(*i, name))
            .unwrap_or_default()
    }

    /// Whether this replica runs the probe `name`.
    pub fn owns(&self, name: &str) -> bool {
        self.count <= 1 || Shard::owner(name, self.count) == self.index
    }
}

fn score(index: u32, name: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(index.to_be_bytes());
    h.update(name.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Shard, ShardError> {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .unwrap_or_default();
        Shard::parse(s, &host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("probe-{i}")).collect()
    }

    #[test]
    fn every_probe_has_exactly_one_owner() {
        let shards: Vec<Shard> = (0..3)
            .map(|i| Shard::new(i, 3).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        let mut per = [0usize; 3];
        for n in names(3000) {
            let owners: Vec<&Shard> = shards.iter().filter(|s| s.owns(&n)).collect();
            assert_eq!(owners.len(), 1, "{n}");
            per[owners[0].index as usize] += 1;
        }
        // Spread: each within 15% of a third.
        assert!(per.iter().all(|&c| (850..=1150).contains(&c)), "{per:?}");
    }

    #[test]
    fn a_new_replica_takes_only_its_share() {
        let all = names(4000);
        let moved: Vec<&String> = all
            .iter()
            .filter(|n| Shard::owner(n, 3) != Shard::owner(n, 4))
            .collect();
        assert!(moved.iter().all(|n| Shard::owner(n, 4) == 3));
        let share = moved.len() as f64 / all.len() as f64;
        assert!((0.2..0.3).contains(&share), "{share}");
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!(Shard::parse("1/3", ""), Ok(Shard { index: 1, count: 3 }));
        assert_eq!(
            Shard::parse("ordinal/3", "wasmprobe-2"),
            Ok(Shard { index: 2, count: 3 })
        );
        assert_eq!(
            Shard::parse("3/3", ""),
            Err(ShardError::OutOfRange { index: 3, count: 3 })
        );
        assert!(matches!(
            Shard::parse("1-3", ""),
            Err(ShardError::Syntax(_))
        ));
        assert!(matches!(Shard::parse("0/0", ""), Err(ShardError::NoShards)));
        assert!(matches!(
            Shard::parse("ordinal/3", "probe-host"),
            Err(ShardError::NoOrdinal(3, _))
        ));
    }
}

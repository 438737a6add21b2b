//! Artifact references: `registry[:port]/repository[:tag][@sha256:HEX]`.
//!
//! The registry host is always explicit. Docker's habit of reading
//! `team/probe` as `docker.io/team/probe` would let a typo in a probe
//! file fetch code from the public internet, so a first component that
//! does not look like a host (`.` or `:` in it, or exactly `localhost`)
//! is refused with a hint instead.
//!
//! A reference with no tag and no digest means tag `latest`; a reference
//! with a digest and no tag has no tag at all (it is pinned, and a tag
//! would be noise). When both are given, the digest decides what is
//! fetched and the tag is kept for display only.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::OciError;

/// Longest repository name the distribution spec lets registries refuse
/// beyond; checking it here gives a clear error instead of a 400.
const MAX_REPOSITORY_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed, validated artifact reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// The registry as written: `host`, `host:port` or `[v6]:port`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry, e.g. `team/probe`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, `latest` when neither tag nor digest was written.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest this reference is pinned to: when set, a pull returns
    /// exactly these bytes or fails, whatever the tag points at now.
    pub fn pinned(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same reference pinned to `digest`, keeping the tag so that a
    /// user reading `registry/repo:tag@sha256:…` sees where it came from.
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// What goes after `/manifests/` in the URL: the pin if any, else the
    /// tag. The pin wins so that a moved tag cannot change what we fetch.
    pub(crate) fn manifest_reference(&self) -> &str {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.as_str(),
            (None, Some(t)) => t,
            // Parsing guarantees a tag or a digest; `latest` is what the
            // parser would have chosen anyway.
            (None, None) => "latest",
        }
    }

    /// `tag v2` or `manifest sha256:…`, for "repository X has no …".
    pub(crate) fn describe_target(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => format!("manifest {d}"),
            (None, Some(t)) => format!("tag {t}"),
            (None, None) => "tag latest".to_owned(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = OciError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| OciError::InvalidReference {
            input: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(bad("empty reference".to_owned()));
        }
        let (name, digest) = match input.split_once('@') {
            Some((name, digest)) => {
                let digest = digest.parse::<Digest>().map_err(|e| bad(e.to_string()))?;
                (name, Some(digest))
            }
            None => (input, None),
        };
        let Some((registry, rest)) = name.split_once('/') else {
            return Err(bad(format!(
                "no registry host; write it in full, e.g. ghcr.io/{name} or 127.0.0.1:5000/{name}"
            )));
        };
        check_registry(registry).map_err(|reason| {
            if reason.is_empty() {
                bad(format!(
                    "{registry:?} is not a registry host (it has no \".\" or \":\" and is not localhost); \
                     write the registry in full, e.g. ghcr.io/{name}"
                ))
            } else {
                bad(reason)
            }
        })?;
        // The registry is split off, so any ':' left separates the tag.
        let (repository, tag) = match rest.rsplit_once(':') {
            Some((repository, tag)) => {
                check_tag(tag).map_err(bad)?;
                (repository, Some(tag.to_owned()))
            }
            None => (rest, None),
        };
        check_repository(repository).map_err(bad)?;
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_owned()),
            (tag, _) => tag,
        };
        Ok(Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag,
            digest,
        })
    }
}

impl TryFrom<String> for Reference {
    type Error = OciError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// `Err("")` means "does not look like a host at all", which the caller
/// words with a hint; any other `Err` is a specific fault.
fn check_registry(registry: &str) -> Result<(), String> {
    if registry.is_empty() {
        return Err("empty registry host before the first '/'".to_owned());
    }
    if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
        return Err(String::new());
    }
    let (host, port) = if let Some(v6) = registry.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err(format!("registry {registry:?} opens '[' without ']'"));
        };
        if addr.parse::<Ipv6Addr>().is_err() {
            return Err(format!(
                "registry {registry:?}: {addr:?} is not an IPv6 address"
            ));
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err(format!("registry {registry:?}: junk after ']'")),
            },
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !host.split('.').all(label_ok) {
            return Err(format!(
                "registry host {host:?} is not a host name or IPv4 address"
            ));
        }
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p != 0);
        if !valid {
            return Err(format!(
                "registry port {port:?} is not a number from 1 to 65535"
            ));
        }
    }
    Ok(())
}

/// Repository components as the distribution spec defines them:
/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or one or more `-`.
fn check_repository(repository: &str) -> Result<(), String> {
    if repository.is_empty() {
        return Err("empty repository after the registry".to_owned());
    }
    if repository.len() > MAX_REPOSITORY_LEN {
        return Err(format!(
            "repository is {} characters long, over {MAX_REPOSITORY_LEN}",
            repository.len()
        ));
    }
    for component in repository.split('/') {
        if !component_ok(component) {
            return Err(format!(
                "repository component {component:?} must be lowercase letters and digits, \
                 joined by '.', '_', '__' or '-'"
            ));
        }
    }
    Ok(())
}

fn component_ok(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or "-"+, always followed by an
        // alphanumeric (the last byte is one, checked above).
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let run = &component[start..i];
        let ok = matches!(run, "." | "_" | "__") || run.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn check_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() {
        return Err("empty tag after ':'".to_owned());
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(format!(
            "tag is {} characters long, over {MAX_TAG_LEN}",
            tag.len()
        ));
    }
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut bytes = tag.bytes();
    let first_ok = bytes.next().is_some_and(word);
    if !first_ok || !bytes.all(|b| word(b) || b == b'.' || b == b'-') {
        return Err(format!(
            "tag {tag:?} must start with a letter, digit or '_' and contain only those, '.' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        s.parse::<Reference>().unwrap_err().to_string()
    }

    #[test]
    fn tag_defaults_to_latest_only_without_digest() {
        let r = parse("127.0.0.1:5000/team/probe");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "team/probe");
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.pinned(), None);
        assert_eq!(r.to_string(), "127.0.0.1:5000/team/probe:latest");

        let pin = Digest::of(b"m");
        let r = parse(&format!("ghcr.io/a/b@{pin}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.pinned(), Some(&pin));
        assert_eq!(r.manifest_reference(), pin.as_str());
        assert_eq!(r.to_string(), format!("ghcr.io/a/b@{pin}"));
    }

    #[test]
    fn tag_and_digest_together_fetch_by_digest_and_display_both() {
        let pin = Digest::of(b"m");
        let text = format!("localhost:5000/x:v1.2-rc_3@{pin}");
        let r = parse(&text);
        assert_eq!(r.tag(), Some("v1.2-rc_3"));
        assert_eq!(r.manifest_reference(), pin.as_str());
        assert_eq!(r.to_string(), text);
        assert_eq!(
            parse("localhost/x:v1").with_digest(pin.clone()).to_string(),
            format!("localhost/x:v1@{pin}")
        );
    }

    #[test]
    fn accepts_hosts_ports_and_ipv6() {
        for (s, registry, repository) in [
            ("localhost/a", "localhost", "a"),
            (
                "registry.example.com/a/b/c:t",
                "registry.example.com",
                "a/b/c",
            ),
            ("[::1]:5000/a:t", "[::1]:5000", "a"),
            ("[::1]/a", "[::1]", "a"),
            ("r.io/a.b/c_d/e__f/g--h", "r.io", "a.b/c_d/e__f/g--h"),
        ] {
            let r = parse(s);
            assert_eq!(
                (r.registry(), r.repository()),
                (registry, repository),
                "{s}"
            );
        }
    }

    #[test]
    fn registry_host_is_required_with_a_hint() {
        let e = err("team/probe:v1");
        assert!(e.contains("\"team\" is not a registry host"), "{e}");
        assert!(e.contains("ghcr.io/team/probe:v1"), "{e}");
        let e = err("probe");
        assert!(e.contains("no registry host"), "{e}");
    }

    #[test]
    fn errors_name_the_bad_part() {
        for (input, needle) in [
            ("", "empty reference"),
            ("r.io/", "empty repository"),
            ("r.io/a:", "empty tag"),
            ("r.io/Team/probe", "component \"Team\""),
            ("r.io/a//b", "component \"\""),
            ("r.io/a-/b", "component \"a-\""),
            ("r.io/a.-b", "component \"a.-b\""),
            ("r.io/a___b", "component \"a___b\""),
            ("r.io/a:-v1", "tag \"-v1\""),
            ("r.io/a:v/1", "tag \"v/1\""),
            ("r.io:0/a", "port \"0\""),
            ("r.io:99999/a", "port \"99999\""),
            ("r.io:/a", "port \"\""),
            ("bad_host.io/a", "not a host name"),
            ("[::zz]:5000/a", "not an IPv6 address"),
            ("r.io/a@sha256:12", "64 hex digits"),
            ("r.io/a@md5:12", "only sha256"),
        ] {
            let e = err(input);
            assert!(e.contains(needle), "{input:?}: {e}");
            assert!(
                e.contains(&format!("{input:?}")),
                "{input:?} not named in: {e}"
            );
        }
    }

    #[test]
    fn long_names_are_refused() {
        let long = format!("r.io/{}", "a".repeat(300));
        assert!(err(&long).contains("over 255"));
        let long_tag = format!("r.io/a:{}", "t".repeat(129));
        assert!(err(&long_tag).contains("over 128"));
    }
}

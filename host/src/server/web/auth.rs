//! HTTP basic auth against bcrypt hashes, as a layer over the whole
//! router.
//!
//! bcrypt is slow on purpose (cost 10 is 50-100 ms), which matters three
//! ways here:
//! - A scraper sends the same credentials every 15 s; paying bcrypt each
//!   time would be most of a scrape's cost. So credentials that verified
//!   are remembered (a keyed SHA-256 of `user:password`, at most
//!   [`CACHE_ENTRIES`]); only successes are cached, so a guess never gets
//!   cheaper. The cache belongs to one loaded config: a reload that
//!   changes a hash forgets it.
//! - It must not block the server's thread: it runs on the blocking pool,
//!   at most [`MAX_CONCURRENT_VERIFICATIONS`] at a time, so a flood of bad
//!   guesses queues instead of taking every core.
//! - An unknown user must take as long as a wrong password, or the answer
//!   time says which users exist: unknown users are verified against a
//!   dummy hash of the highest cost in the file.
//!
//! Paths in `[unauthenticated] paths` skip all of this (exact match).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::{WebConfigError, WebState};

/// Verified credentials remembered per loaded config.
const CACHE_ENTRIES: usize = 64;

/// bcrypt verifications running at once (the machine has 2 cores).
const MAX_CONCURRENT_VERIFICATIONS: usize = 2;

/// The challenge sent with every 401.
const CHALLENGE: &str = "Basic realm=\"wasmprobe\"";

/// The password behind the dummy hash; nothing is ever compared to it
/// with success, since a match on an unknown user is still a refusal.
const DUMMY_PASSWORD: &str = "wasmprobe: no such user";

/// The users of one loaded web config and what serving them needs.
pub(super) struct BasicAuth {
    /// User name → bcrypt hash, every hash checked at load.
    users: BTreeMap<String, String>,
    /// A hash of [`DUMMY_PASSWORD`] at the highest cost in `users`. Its
    /// salt is 16 fresh random bytes, so it also keys the cache digests:
    /// a memory dump of the cache cannot be checked against guesses
    /// without it.
    dummy: String,
    public_paths: BTreeSet<String>,
    verified: Mutex<VecDeque<[u8; 32]>>,
    verifying: Arc<Semaphore>,
}

impl BasicAuth {
    /// Checks every hash and path. `None` when there are no users: basic
    /// auth is off and `paths` has nothing to exempt.
    pub(super) fn new(
        path: &Path,
        users: BTreeMap<String, String>,
        paths: Vec<String>,
    ) -> Result<Option<BasicAuth>, WebConfigError> {
        let invalid = |key: String, problem: String| WebConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            problem,
        };
        let mut public_paths = BTreeSet::new();
        for (i, p) in paths.into_iter().enumerate() {
            if !p.starts_with('/') {
                return Err(invalid(
                    format!("unauthenticated.paths[{i}]"),
                    format!("{p:?} does not start with /"),
                ));
            }
            public_paths.insert(p);
        }
        if users.is_empty() {
            return Ok(None);
        }
        let mut max_cost = 0;
        for (user, hash) in &users {
            let key = format!("basic_auth_users.{user}");
            if user.contains(':') {
                return Err(invalid(key, "a user name cannot contain ':'".into()));
            }
            let cost = hash_cost(hash).map_err(|problem| invalid(key, problem))?;
            max_cost = max_cost.max(cost);
        }
        let dummy = bcrypt::hash(DUMMY_PASSWORD, max_cost).map_err(|e| {
            invalid(
                "basic_auth_users".into(),
                format!("cannot prepare the hash for unknown users: {e}"),
            )
        })?;
        Ok(Some(BasicAuth {
            users,
            dummy,
            public_paths,
            verified: Mutex::new(VecDeque::with_capacity(CACHE_ENTRIES)),
            verifying: Arc::new(Semaphore::new(MAX_CONCURRENT_VERIFICATIONS)),
        }))
    }

    pub(super) fn users(&self) -> usize {
        self.users.len()
    }

    fn is_public(&self, path: &str) -> bool {
        self.public_paths.contains(path)
    }

    /// Whether `credentials` name a user and that user's password.
    async fn check(&self, credentials: Credentials) -> bool {
        let digest = self.digest(&credentials);
        if self.was_verified(&digest) {
            return true;
        }
        let (hash, known) = match self.users.get(&credentials.user) {
            Some(h) => (h.clone(), true),
            None => (self.dummy.clone(), false),
        };
        let Ok(permit) = self.verifying.clone().acquire_owned().await else {
            return false;
        };
        let password = credentials.password;
        // The permit moves into the blocking task: a client that hangs up
        // mid-check does not free a slot while bcrypt still runs.
        let matched = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            bcrypt::verify(password.as_slice(), &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if known && matched {
            self.remember(digest);
            true
        } else {
            false
        }
    }

    fn digest(&self, credentials: &Credentials) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.dummy.as_bytes());
        h.update([0]);
        h.update(credentials.user.as_bytes());
        h.update(b":");
        h.update(&credentials.password);
        let mut out = [0u8; 32];
        out.copy_from_slice(&h.finalize());
        out
    }

    fn was_verified(&self, digest: &[u8; 32]) -> bool {
        let verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        verified.contains(digest)
    }

    fn remember(&self, digest: [u8; 32]) {
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.contains(&digest) {
            return;
        }
        if verified.len() >= CACHE_ENTRIES {
            verified.pop_front();
        }
        verified.push_back(digest);
    }
}

/// The cost of a bcrypt hash, or why it is not one.
fn hash_cost(hash: &str) -> Result<u32, String> {
    let parts: bcrypt::HashParts = hash.parse().map_err(|_| "not a bcrypt hash".to_string())?;
    let cost = parts.get_cost();
    if !(4..=31).contains(&cost) {
        return Err(format!("bcrypt cost {cost} is outside 4..=31"));
    }
    Ok(cost)
}

/// A user and password from an `Authorization: Basic` header.
struct Credentials {
    user: String,
    password: Vec<u8>,
}

impl Credentials {
    /// `None` for anything but well-formed basic credentials; the user
    /// name ends at the first ':' (RFC 7617), the password may hold more.
    fn parse(value: &HeaderValue) -> Option<Credentials> {
        let value = value.to_str().ok()?;
        let (scheme, encoded) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = STANDARD.decode(encoded.trim()).ok()?;
        let colon = decoded.iter().position(|b| *b == b':')?;
        let (user, rest) = decoded.split_at(colon);
        Some(Credentials {
            user: String::from_utf8(user.to_vec()).ok()?,
            password: rest.get(1..)?.to_vec(),
        })
    }
}

/// The layer: lets a request through when basic auth is off, its path is
/// public, or its credentials verify; otherwise 401 with a challenge.
pub(super) async fn require(
    State(web): State<Arc<WebState>>,
    request: Request,
    next: Next,
) -> Response {
    let config = web.current();
    let Some(auth) = config.basic_auth() else {
        return next.run(request).await;
    };
    if auth.is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let credentials = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(Credentials::parse);
    let allowed = match credentials {
        Some(c) => auth.check(c).await,
        None => false,
    };
    if allowed {
        next.run(request).await
    } else {
        challenge()
    }
}

fn challenge() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(CHALLENGE),
        )],
        "unauthorized\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    fn auth_with(users: &[(&str, &str)], public: &[&str]) -> BasicAuth {
        let users = users
            .iter()
            .map(|(u, p)| (u.to_string(), bcrypt::hash(p, 4).unwrap()))
            .collect();
        let public = public.iter().map(|p| p.to_string()).collect();
        BasicAuth::new(Path::new("web.toml"), users, public)
            .unwrap()
            .unwrap()
    }

    fn basic(user: &str, password: &str) -> HeaderValue {
        let encoded = STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    fn credentials(user: &str, password: &str) -> Credentials {
        Credentials::parse(&basic(user, password)).unwrap()
    }

    #[tokio::test]
    async fn right_wrong_and_unknown() {
        let auth = auth_with(&[("alice", "s3cret")], &[]);
        assert!(auth.check(credentials("alice", "s3cret")).await);
        assert!(!auth.check(credentials("alice", "wrong")).await);
        assert!(!auth.check(credentials("bob", "s3cret")).await);
        // The dummy for unknown users costs what the real hashes cost.
        let dummy: bcrypt::HashParts = auth.dummy.parse().unwrap();
        assert_eq!(dummy.get_cost(), 4);
    }

    #[tokio::test]
    async fn only_successes_are_cached_and_the_cache_is_bounded() {
        let auth = auth_with(&[("alice", "s3cret")], &[]);
        assert!(!auth.check(credentials("alice", "wrong")).await);
        assert!(auth.verified.lock().unwrap().is_empty());
        assert!(auth.check(credentials("alice", "s3cret")).await);
        assert!(auth.was_verified(&auth.digest(&credentials("alice", "s3cret"))));
        assert!(auth.check(credentials("alice", "s3cret")).await);
        assert_eq!(auth.verified.lock().unwrap().len(), 1);
        for i in 0..(CACHE_ENTRIES as u32 + 10) {
            auth.remember(auth.digest(&credentials("alice", &i.to_string())));
        }
        assert_eq!(auth.verified.lock().unwrap().len(), CACHE_ENTRIES);
    }

    #[test]
    fn hashes_are_checked() {
        let users = |h: &str| BTreeMap::from([("alice".to_string(), h.to_string())]);
        let refusal = |h: &str| match BasicAuth::new(Path::new("w.toml"), users(h), vec![]) {
            Ok(_) => panic!("{h:?} accepted"),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            refusal("plaintext"),
            "web config w.toml: basic_auth_users.alice: not a bcrypt hash"
        );
        assert_eq!(
            refusal("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="),
            "web config w.toml: basic_auth_users.alice: not a bcrypt hash"
        );
    }

    #[test]
    fn header_parsing() {
        let c = credentials("alice", "pass:with:colons");
        assert_eq!(c.user, "alice");
        assert_eq!(c.password, b"pass:with:colons");
        let lower = HeaderValue::from_str(&format!("basic {}", STANDARD.encode("a:b"))).unwrap();
        assert!(Credentials::parse(&lower).is_some());
        let no_colon = format!("Basic {}", STANDARD.encode("nocolon"));
        for bad in ["Bearer abc", "Basic", "Basic !!!", no_colon.as_str()] {
            assert!(
                Credentials::parse(&HeaderValue::from_str(bad).unwrap()).is_none(),
                "{bad}"
            );
        }
    }

    async fn status(
        router: &Router,
        path: &str,
        auth: Option<HeaderValue>,
    ) -> (StatusCode, Option<HeaderValue>) {
        let mut request = axum::http::Request::builder().uri(path);
        if let Some(a) = auth {
            request = request.header(header::AUTHORIZATION, a);
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        (
            response.status(),
            response.headers().get(header::WWW_AUTHENTICATE).cloned(),
        )
    }

    #[tokio::test]
    async fn the_layer_guards_every_path_but_the_public_ones() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let file = dir.path().join("web.toml");
        std::fs::write(
            &file,
            format!("[basic_auth_users]\nalice = \"{hash}\"\n[unauthenticated]\npaths = [\"/healthz\"]\n"),
        )
        .unwrap();
        let web = Arc::new(WebState::load(&file).unwrap());
        let router = super::super::protect(
            Router::new()
                .route("/metrics", get(|| async { "metrics" }))
                .route("/healthz", get(|| async { "ok" })),
            web,
        );

        let (code, challenge) = status(&router, "/metrics", None).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        assert_eq!(challenge.unwrap(), CHALLENGE);
        let (code, _) = status(&router, "/metrics", Some(basic("alice", "wrong"))).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        let (code, _) = status(&router, "/metrics", Some(basic("mallory", "s3cret"))).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        let (code, _) = status(&router, "/metrics", Some(basic("alice", "s3cret"))).await;
        assert_eq!(code, StatusCode::OK);

        let (code, _) = status(&router, "/healthz", None).await;
        assert_eq!(code, StatusCode::OK);
        // Exact paths only, and unknown paths say nothing without credentials.
        let (code, _) = status(&router, "/healthz/", None).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        let (code, _) = status(&router, "/nope", None).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        let (code, _) = status(&router, "/nope", Some(basic("alice", "s3cret"))).await;
        assert_eq!(code, StatusCode::NOT_FOUND);
    }
}

//! One run of the probe: the credential (secrets, the OAuth 2.0 token), the
//! request, the verdict. Every host call goes through [`Io`], so a whole
//! run, token cache included, is tested natively with a fake; `lib.rs`
//! implements it with the SDK.

use wasmprobe_sdk::Report;
use wasmprobe_sdk::http::{HttpError, Request, Response};

use crate::auth::oauth2;
use crate::check::Check;

/// The host calls a run makes.
pub trait Io {
    /// The probe's secret `name`; none when it is not set.
    fn secret(&self, name: &str) -> Option<String>;
    fn state_get(&self, key: &str) -> Option<Vec<u8>>;
    /// Stores `value`; the error says why it could not (a full quota).
    fn state_set(&self, key: &str, value: &[u8]) -> Result<(), String>;
    fn state_delete(&self, key: &str);
    fn send(&self, request: &Request) -> Result<Response, HttpError>;
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
    /// A log line at INFO: worth knowing, not a failure (a one-shot
    /// `wasmprobe probe` has no state to keep a token in, for one).
    fn note(&self, message: &str);
}

/// Probes `target`: a missing credential or a failed token request fails
/// the probe before the request is sent.
pub fn run(check: &Check, target: &str, io: &impl Io) -> Report {
    let credential = match check.auth().credential(io, &check.transport("GET", target)) {
        Ok(c) => c,
        Err(message) => return check.not_sent(message),
    };
    let request = check.request(target, credential.as_ref().map(|c| c.header.as_str()));
    let result = io.send(&request);
    // A token the target refuses (revoked, or kept without an expiry) is
    // not offered again.
    if credential.is_some_and(|c| c.token) && result.as_ref().is_ok_and(|r| r.status == 401) {
        io.state_delete(oauth2::STATE_KEY);
    }
    check.evaluate(result)
}

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

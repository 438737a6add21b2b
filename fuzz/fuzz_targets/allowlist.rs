//! The allow-list matcher. Input: a rule on the first line, a target on
//! the second. Never panics; and when a rule naming one address admits a
//! URL, the URL's host, however spelled, is that address.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use wasmprobe::egress::{AllowList, AllowRule};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(2, '\n');
    let (Some(rule), Some(target)) = (lines.next(), lines.next()) else {
        return;
    };
    let Ok(rule) = AllowRule::try_from(rule.to_string()) else {
        return;
    };
    let list = AllowList::new(vec![rule.clone()]);
    if list.check_target(target).is_err() {
        return;
    }
    // Oracle: a rule for 127.0.0.1 exactly admits only URLs whose host is
    // 127.0.0.1 (in any spelling the URL standard accepts).
    let shown = rule.to_string();
    if !shown.starts_with("http://127.0.0.1:") && !shown.starts_with("http://127.0.0.1/32:") {
        return;
    }
    if let Ok(url) = url::Url::parse(target)
        && let Some(host) = url.host_str()
    {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            assert_eq!(
                ip.to_canonical(),
                IpAddr::from([127, 0, 0, 1]),
                "{shown} admitted {target}"
            );
        }
    }
});

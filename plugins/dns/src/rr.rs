//! Records as blackbox_exporter sees them: the one-line text its regular
//! expressions match, the checks of `validate_*_rrs`, response codes by
//! name, and the SOA serial.

use regex::Regex;
use wasmprobe_sdk::dns::ResourceRecord;

use crate::config::RrValidator;

/// A record's text as miekg/dns prints it, which blackbox_exporter's
/// regular expressions are written against:
/// `name<TAB>ttl<TAB>class<TAB>type<TAB>data`, the name fully qualified.
pub(crate) fn text(rr: &ResourceRecord) -> String {
    let dot = if rr.name.ends_with('.') { "" } else { "." };
    format!(
        "{}{dot}\t{}\t{}\t{}\t{}",
        rr.name, rr.ttl, rr.class, rr.record_type, rr.data
    )
}

/// A section's validator with its expressions compiled.
#[derive(Debug, Default)]
pub(crate) struct Validator {
    matches: Vec<Regex>,
    all_match: Vec<Regex>,
    not_matches: Vec<Regex>,
    none_matches: Vec<Regex>,
}

impl Validator {
    /// `key` names the section's table in error messages.
    pub(crate) fn new(v: &RrValidator, key: &str) -> Result<Validator, String> {
        let compile = |list: &[String], field: &str| {
            list.iter()
                .map(|re| {
                    Regex::new(re).map_err(|e| {
                        format!("{key}.{field}: invalid regular expression {re:?}: {e}")
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Validator {
            matches: compile(&v.fail_if_matches_regexp, "fail_if_matches_regexp")?,
            all_match: compile(&v.fail_if_all_match_regexp, "fail_if_all_match_regexp")?,
            not_matches: compile(&v.fail_if_not_matches_regexp, "fail_if_not_matches_regexp")?,
            none_matches: compile(
                &v.fail_if_none_matches_regexp,
                "fail_if_none_matches_regexp",
            )?,
        })
    }

    /// Why the section fails, or `None` when it passes. The rules and their
    /// order are blackbox_exporter's: an empty section fails the "not" and
    /// "none" checks; a record matching a `fail_if_matches_regexp` or
    /// missing a `fail_if_not_matches_regexp` fails at once; the "all" and
    /// "none" checks are settled after every record was seen.
    pub(crate) fn check(&self, rrs: &[ResourceRecord]) -> Option<String> {
        if rrs.is_empty() {
            if !self.not_matches.is_empty() {
                return Some("fail_if_not_matches_regexp is set but there are no records".into());
            }
            if !self.none_matches.is_empty() {
                return Some("fail_if_none_matches_regexp is set but there are no records".into());
            }
        }
        let mut all_match = true;
        let mut any_match = false;
        for rr in rrs {
            let line = text(rr);
            if let Some(re) = self.matches.iter().find(|re| re.is_match(&line)) {
                return Some(format!(
                    "record {line:?} matched fail_if_matches_regexp {:?}",
                    re.as_str()
                ));
            }
            if !self.all_match.iter().all(|re| re.is_match(&line)) {
                all_match = false;
            }
            if let Some(re) = self.not_matches.iter().find(|re| !re.is_match(&line)) {
                return Some(format!(
                    "record {line:?} did not match fail_if_not_matches_regexp {:?}",
                    re.as_str()
                ));
            }
            if self.none_matches.iter().any(|re| re.is_match(&line)) {
                any_match = true;
            }
        }
        if !self.all_match.is_empty() && !all_match {
            return Some("not every record matched fail_if_all_match_regexp".into());
        }
        if !self.none_matches.is_empty() && !any_match {
            return Some("no record matched fail_if_none_matches_regexp".into());
        }
        None
    }
}

/// The numeric value of a response code by name: miekg/dns's names (those
/// blackbox_exporter configs use), a few aliases, and `RCODE<n>`.
pub(crate) fn rcode(name: &str) -> Option<u16> {
    let upper = name.trim().to_ascii_uppercase();
    let code = match upper.as_str() {
        "NOERROR" => 0,
        "FORMERR" => 1,
        "SERVFAIL" => 2,
        "NXDOMAIN" => 3,
        "NOTIMP" | "NOTIMPL" => 4,
        "REFUSED" => 5,
        "YXDOMAIN" => 6,
        "YXRRSET" => 7,
        "NXRRSET" => 8,
        "NOTAUTH" => 9,
        "NOTZONE" => 10,
        "BADSIG" | "BADVERS" => 16,
        "BADKEY" => 17,
        "BADTIME" => 18,
        "BADMODE" => 19,
        "BADNAME" => 20,
        "BADALG" => 21,
        "BADTRUNC" => 22,
        "BADCOOKIE" => 23,
        other => return other.strip_prefix("RCODE")?.parse().ok(),
    };
    Some(code)
}

/// The serial of a SOA record's data (`mname rname serial refresh retry
/// expire minimum`).
pub(crate) fn soa_serial(data: &str) -> Option<u32> {
    data.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rr(name: &str, rtype: &str, data: &str) -> ResourceRecord {
        ResourceRecord {
            name: name.into(),
            record_type: rtype.into(),
            class: "IN".into(),
            ttl: 7200,
            data: data.into(),
        }
    }

    fn validator(json: &str) -> Validator {
        let v: RrValidator = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"));
        Validator::new(&v, "validate_additional_rrs").unwrap_or_else(|e| panic!("{e}"))
    }

    /// The additional section of blackbox_exporter's own test server.
    fn additional() -> Vec<ResourceRecord> {
        vec![
            rr("ns1.isp.net.", "A", "127.0.0.1"),
            rr("ns1.isp.net.", "AAAA", "::1"),
            rr("ns2.isp.net.", "A", "127.0.0.2"),
        ]
    }

    #[test]
    fn text_is_miekg_dns_one_line_form() {
        assert_eq!(
            text(&rr("example.com", "MX", "10 mail.example.com.")),
            "example.com.\t7200\tIN\tMX\t10 mail.example.com."
        );
        assert_eq!(text(&rr(".", "NS", "a.root.")), ".\t7200\tIN\tNS\ta.root.");
    }

    /// The cases of blackbox_exporter's authoritative-server test.
    #[test]
    fn blackbox_exporter_cases() {
        let rrs = additional();
        assert_eq!(
            validator(r#"{"fail_if_not_matches_regexp": ["^ns.*.isp"]}"#).check(&rrs),
            None
        );
        assert!(
            validator(r#"{"fail_if_matches_regexp": ["^ns.*.isp"]}"#)
                .check(&rrs)
                .is_some()
        );
        // Not every record is in 127.0.0.0/24: the "all" check fails.
        assert!(
            validator(r#"{"fail_if_all_match_regexp": [".*127.0.0.*"]}"#)
                .check(&rrs)
                .is_some()
        );
        assert!(
            validator(r#"{"fail_if_none_matches_regexp": [".*127.0.0.3.*"]}"#)
                .check(&rrs)
                .is_some()
        );
        assert_eq!(
            validator(r#"{"fail_if_none_matches_regexp": [".*127.0.0.2.*"]}"#).check(&rrs),
            None
        );
        assert_eq!(
            validator(r#"{"fail_if_all_match_regexp": ["isp\\.net\\.\t"]}"#).check(&rrs),
            None
        );
    }

    #[test]
    fn empty_sections() {
        let none: Vec<ResourceRecord> = Vec::new();
        assert!(
            validator(r#"{"fail_if_not_matches_regexp": ["x"]}"#)
                .check(&none)
                .is_some()
        );
        assert!(
            validator(r#"{"fail_if_none_matches_regexp": ["x"]}"#)
                .check(&none)
                .is_some()
        );
        assert_eq!(
            validator(r#"{"fail_if_all_match_regexp": ["x"], "fail_if_matches_regexp": ["x"]}"#)
                .check(&none),
            None
        );
    }

    #[test]
    fn bad_expressions_name_their_key() {
        let v: RrValidator = serde_json::from_str(r#"{"fail_if_matches_regexp": ["("]}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        let e = Validator::new(&v, "validate_answer_rrs").err();
        assert!(e.is_some_and(|e| e.starts_with(
            "validate_answer_rrs.fail_if_matches_regexp: invalid regular expression"
        )));
    }

    #[test]
    fn rcodes_by_name() {
        assert_eq!(rcode("NOERROR"), Some(0));
        assert_eq!(rcode("nxdomain"), Some(3));
        assert_eq!(rcode("NOTIMP"), rcode("NotImpl"));
        assert_eq!(rcode("BADVERS"), Some(16));
        assert_eq!(rcode("RCODE12"), Some(12));
        assert_eq!(rcode("NOT_A_VALID_RCODE"), None);
    }

    #[test]
    fn soa_serials() {
        assert_eq!(
            soa_serial("ns.example.com. noc.example.com. 1000 7200 3600 1209600 3600"),
            Some(1000)
        );
        assert_eq!(soa_serial("garbage"), None);
    }
}

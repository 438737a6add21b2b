//! Template expansion of `send` and label values with the groups of a
//! step's `expect`, by the rules of Go's `Regexp.Expand`, which
//! blackbox_exporter uses: configs written for it must expand the same.
//!
//! `$name` and `${name}` refer to a group by number or name; a name runs
//! as long as letters, digits and `_` follow, so `$1x` is the group named
//! `1x` (write `${1}x`). `$$` is a `$`. A group that does not exist or did
//! not take part in the match expands to nothing; a `$` that starts no
//! valid reference is kept as it is.

use regex::Captures;

/// `template` with every reference replaced by what `caps` matched.
pub(crate) fn expand(caps: &Captures<'_>, template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match reference(rest) {
            Some((name, after)) => {
                out.push_str(group(caps, name));
                rest = after;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
    out
}

/// The name of a reference at the start of `s` (just after its `$`) and
/// what follows it, or `None` when `s` does not start one.
fn reference(s: &str) -> Option<(&str, &str)> {
    let (braced, body) = match s.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, s),
    };
    let len = body
        .char_indices()
        .find(|&(_, c)| !(c.is_alphanumeric() || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if len == 0 {
        return None;
    }
    let (name, after) = body.split_at(len);
    if braced {
        after.strip_prefix('}').map(|after| (name, after))
    } else {
        Some((name, after))
    }
}

fn group<'h>(caps: &Captures<'h>, name: &str) -> &'h str {
    let found = match number(name) {
        Some(n) => caps.get(n),
        None => caps.name(name),
    };
    found.map_or("", |m| m.as_str())
}

/// A reference made only of digits is a group number, except with a
/// leading zero or past 10^8: Go then looks it up as a name.
fn number(name: &str) -> Option<usize> {
    if !name.bytes().all(|b| b.is_ascii_digit()) || (name.len() > 1 && name.starts_with('0')) {
        return None;
    }
    name.parse::<usize>().ok().filter(|&n| n < 100_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn run(re: &str, line: &str, template: &str) -> String {
        let re = Regex::new(re).unwrap();
        let caps = re.captures(line).unwrap();
        expand(&caps, template)
    }

    #[test]
    fn numbered_and_named_groups() {
        let re = r"PING :(?P<token>[^ ]+) (\d+)";
        assert_eq!(run(re, "PING :abc 42", "PONG ${1}"), "PONG abc");
        assert_eq!(run(re, "PING :abc 42", "PONG $1"), "PONG abc");
        assert_eq!(run(re, "PING :abc 42", "PONG ${token}/$2"), "PONG abc/42");
        assert_eq!(run(re, "PING :abc 42", "$0"), "PING :abc 42");
    }

    #[test]
    fn go_rules_for_odd_references() {
        let re = r"(a)(b)?";
        // `$1x` names a group "1x", which does not exist.
        assert_eq!(run(re, "a", "[$1x]"), "[]");
        assert_eq!(run(re, "a", "[${1}x]"), "[ax]");
        // A group that did not take part, or does not exist.
        assert_eq!(run(re, "a", "[$2][$9][${nope}]"), "[][][]");
        // `$$` is a dollar; a `$` starting no reference stays.
        assert_eq!(run(re, "a", "$$1 costs $ 5 ${ ${1"), "$1 costs $ 5 ${ ${1");
        assert_eq!(run(re, "a", "end$"), "end$");
        // A leading zero makes a name, not a number.
        assert_eq!(run(re, "a", "[$01]"), "[]");
    }
}

//! `fail_if_body_json_matches_cel` and `fail_if_body_json_not_matches_cel`:
//! a CEL expression over the response body parsed as JSON, bound to the
//! variable `body`, as blackbox_exporter 0.27+ evaluates it.
//!
//! JSON maps to CEL as Go's `encoding/json` hands it to cel-go in
//! blackbox_exporter: objects are maps with string keys, arrays lists, and
//! every number a `double` (`body.count == 3` still holds: CEL compares
//! numbers across types; arithmetic across types is an error, as in
//! cel-go). The standard library is there without `timestamp()` and
//! `duration()`; `matches()` is this module's, on the plugin's own `regex`
//! build (see the crate's `Cargo.toml`), with RE2's syntax as in cel-go.
//!
//! An expression is parsed when the config is read, so a syntax error is an
//! invalid config; names are resolved only when it runs, so `bdy.status`
//! fails the probe with "undeclared reference" rather than the config.

use std::collections::HashMap;
use std::sync::Arc;

use cel::extractors::This;
use cel::objects::{Key, Map};
use cel::{Context, ExecutionError, Program, Value};
use regex::Regex;

/// A parsed expression with its source, for messages.
#[derive(Debug)]
pub struct Expression {
    source: String,
    program: Program,
}

impl Expression {
    /// Parses `source`; `key` names the config key in the error.
    pub fn parse(source: &str, key: &str) -> Result<Expression, String> {
        let program = Program::compile(source).map_err(|errors| {
            let detail = errors
                .errors
                .iter()
                .map(|e| format!("{}:{}: {}", e.pos.0, e.pos.1, e.msg))
                .collect::<Vec<_>>()
                .join("; ");
            format!("{key}: invalid CEL expression {source:?}: {detail}")
        })?;
        Ok(Expression {
            source: source.to_string(),
            program,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The expression's value for `body`, which must be a bool.
    pub fn matches(&self, body: &Body) -> Result<bool, String> {
        let mut context = Context::default();
        context
            .add_function("matches", matches)
            .map_err(|e| format!("CEL expression {:?}: {e}", self.source))?;
        context.add_variable_from_value("body", body.0.clone());
        match self.program.execute(&context) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "CEL expression {:?} gives a {}, not a bool",
                self.source,
                other.type_of()
            )),
            Err(e) => Err(format!("CEL expression {:?} failed: {e}", self.source)),
        }
    }
}

/// CEL's `matches`: `s.matches(re)` or `matches(s, re)`, true when `re`
/// matches anywhere in `s`.
fn matches(This(s): This<Arc<String>>, re: Arc<String>) -> Result<bool, ExecutionError> {
    Regex::new(&re).map(|r| r.is_match(&s)).map_err(|e| {
        ExecutionError::function_error("matches", format!("invalid regular expression {re:?}: {e}"))
    })
}

/// A response body as a CEL value.
#[derive(Debug, Clone)]
pub struct Body(Value);

impl Body {
    /// Parses `bytes` as one JSON document.
    pub fn parse(bytes: &[u8]) -> Result<Body, String> {
        serde_json::from_slice::<serde_json::Value>(bytes)
            .map(|v| Body(to_cel(v)))
            .map_err(|e| format!("body is not JSON: {e}"))
    }
}

fn to_cel(value: serde_json::Value) -> Value {
    use serde_json::Value as J;
    match value {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(b),
        // Every JSON number as a double, as cel-go sees Go's float64.
        J::Number(n) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        J::String(s) => Value::String(Arc::new(s)),
        J::Array(items) => Value::List(Arc::new(items.into_iter().map(to_cel).collect())),
        J::Object(fields) => {
            let map: HashMap<Key, Value> = fields
                .into_iter()
                .map(|(k, v)| (Key::String(Arc::new(k)), to_cel(v)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

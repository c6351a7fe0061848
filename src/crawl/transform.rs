//! Field transforms of parser rules: `trim`, `squash`, `lowercase`, `uppercase`,
//! `number`, `integer`, `absolute_url`, `regex:<pattern>`.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Number, Value};
use url::Url;

/// One compiled transform.
pub(crate) enum Transform {
    Trim,
    Squash,
    Lowercase,
    Uppercase,
    Number,
    Integer,
    AbsoluteUrl,
    Capture(Regex),
}

impl Transform {
    /// Reads one `transforms` entry.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "trim" => Transform::Trim,
            "squash" => Transform::Squash,
            "lowercase" => Transform::Lowercase,
            "uppercase" => Transform::Uppercase,
            "number" => Transform::Number,
            "integer" => Transform::Integer,
            "absolute_url" => Transform::AbsoluteUrl,
            _ => match text.strip_prefix("regex:") {
                Some(pattern) => Transform::Capture(
                    Regex::new(pattern).map_err(|e| format!("bad regex {pattern:?}: {e}"))?,
                ),
                None => return Err(format!("unknown transform {text:?}")),
            },
        })
    }

    /// Applies the transform; None when it finds nothing.
    pub(crate) fn apply(&self, value: Value, page_url: &Url) -> Option<Value> {
        let Value::String(text) = value else {
            return match self {
                Transform::Number | Transform::Integer => {
                    number(&value.to_string(), matches!(self, Transform::Integer))
                }
                _ => Some(value),
            };
        };
        match self {
            Transform::Trim => Some(Value::String(text.trim().to_string())),
            Transform::Squash => Some(Value::String(
                text.split_whitespace().collect::<Vec<_>>().join(" "),
            )),
            Transform::Lowercase => Some(Value::String(text.to_lowercase())),
            Transform::Uppercase => Some(Value::String(text.to_uppercase())),
            Transform::Number => number(&text, false),
            Transform::Integer => number(&text, true),
            Transform::AbsoluteUrl => page_url
                .join(text.trim())
                .ok()
                .map(|u| Value::String(u.into())),
            Transform::Capture(regex) => {
                let caps = regex.captures(&text)?;
                let found = caps.get(1).or_else(|| caps.get(0))?;
                Some(Value::String(found.as_str().to_string()))
            }
        }
    }
}

/// The first number in `text`, thousands separators ignored (`¥1,299.00` -> 1299.0).
fn number(text: &str, integer: bool) -> Option<Value> {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    let pattern = PATTERN.get_or_init(|| Regex::new(r"-?\d+(?:\.\d+)?").expect("valid regex"));
    let cleaned = text.replace(',', "");
    let found = pattern.find(&cleaned)?.as_str();
    if integer || !found.contains('.') {
        let whole = found.split('.').next()?;
        return whole.parse::<i64>().ok().map(Value::from);
    }
    found
        .parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(transforms: &[&str], input: &str) -> Option<Value> {
        let url = Url::parse("http://site.test/a/b").unwrap();
        transforms
            .iter()
            .map(|t| Transform::parse(t).unwrap())
            .try_fold(Value::String(input.to_string()), |v, t| t.apply(v, &url))
    }

    #[test]
    fn transforms_chain() {
        assert_eq!(
            run(&["trim", "number"], " ¥1,299.50 "),
            Some(serde_json::json!(1299.5))
        );
        assert_eq!(run(&["integer"], "共 42 件"), Some(serde_json::json!(42)));
        assert_eq!(
            run(&["regex:id=(\\d+)", "integer"], "x id=77 y"),
            Some(serde_json::json!(77))
        );
        assert_eq!(run(&["regex:nomatch"], "abc"), None);
        assert_eq!(
            run(&["squash", "uppercase"], " a \n b "),
            Some(serde_json::json!("A B"))
        );
        assert_eq!(
            run(&["absolute_url"], "../c?d=1"),
            Some(serde_json::json!("http://site.test/c?d=1"))
        );
        assert!(Transform::parse("explode").is_err());
    }
}

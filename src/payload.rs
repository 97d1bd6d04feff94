//! Payload validation: a size limit and a small JSON schema per job kind.
//!
//! The schema language is a strict subset of JSON Schema (type, required, properties,
//! additional_properties, items, enum, minimum/maximum, min_length/max_length,
//! max_items), enough to refuse malformed payloads at submit time with a message that
//! points at the offending field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Payloads larger than this (serialised) are refused unless a kind sets its own limit.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// Deepest nesting of arrays and objects a payload may have: a scalar is depth 0, `[]`
/// and `{"a": 1}` depth 1, `{"a": [1]}` depth 2.
///
/// Every store decodes JSON with serde_json, which gives up past 128 levels; a payload
/// stored deeper would be accepted at submit and then be unreadable at claim. The limit
/// leaves ample headroom below that (the stores wrap a payload in a few levels of their
/// own when they read a batch back) and is far beyond what a real job needs.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// A JSON type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonType {
    /// `null`.
    Null,
    /// `true` or `false`.
    Boolean,
    /// A whole number.
    Integer,
    /// Any number.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

impl JsonType {
    fn of(v: &Value) -> JsonType {
        match v {
            Value::Null => JsonType::Null,
            Value::Bool(_) => JsonType::Boolean,
            Value::Number(n) if n.is_i64() || n.is_u64() => JsonType::Integer,
            Value::Number(_) => JsonType::Number,
            Value::String(_) => JsonType::String,
            Value::Array(_) => JsonType::Array,
            Value::Object(_) => JsonType::Object,
        }
    }

    fn accepts(self, v: &Value) -> bool {
        let actual = JsonType::of(v);
        actual == self || (self == JsonType::Number && actual == JsonType::Integer)
    }

    fn name(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Boolean => "boolean",
            JsonType::Integer => "integer",
            JsonType::Number => "number",
            JsonType::String => "string",
            JsonType::Array => "array",
            JsonType::Object => "object",
        }
    }
}

/// A schema for a JSON value.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Schema {
    /// Required type.
    #[serde(rename = "type")]
    pub ty: Option<JsonType>,
    /// Object fields that must be present.
    pub required: Vec<String>,
    /// Schemas of object fields.
    pub properties: BTreeMap<String, Schema>,
    /// Whether fields not named in `properties` are allowed (default: yes).
    pub additional_properties: Option<bool>,
    /// Schema of array items.
    pub items: Option<Box<Schema>>,
    /// The value must equal one of these.
    #[serde(rename = "enum")]
    pub one_of: Option<Vec<Value>>,
    /// Smallest number allowed.
    pub minimum: Option<f64>,
    /// Largest number allowed.
    pub maximum: Option<f64>,
    /// Shortest string allowed, in characters.
    pub min_length: Option<usize>,
    /// Longest string allowed, in characters.
    pub max_length: Option<usize>,
    /// Most array items allowed.
    pub max_items: Option<usize>,
}

impl Schema {
    /// A schema that only requires a type.
    pub fn of_type(ty: JsonType) -> Self {
        Self {
            ty: Some(ty),
            ..Default::default()
        }
    }

    /// An object schema with these fields, the `required` ones listed.
    pub fn object(
        required: &[&str],
        properties: impl IntoIterator<Item = (&'static str, Schema)>,
    ) -> Self {
        Self {
            ty: Some(JsonType::Object),
            required: required.iter().map(|s| s.to_string()).collect(),
            properties: properties
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            additional_properties: Some(false),
            ..Default::default()
        }
    }

    /// An array schema with items of `item`.
    pub fn array_of(item: Schema) -> Self {
        Self {
            ty: Some(JsonType::Array),
            items: Some(Box::new(item)),
            ..Default::default()
        }
    }

    /// Checks `value`, returning the first violation found.
    pub fn validate(&self, value: &Value) -> Result<(), PayloadError> {
        self.check(value, "payload")
    }

    fn check(&self, v: &Value, path: &str) -> Result<(), PayloadError> {
        let fail = |msg: String| {
            Err(PayloadError::Invalid {
                path: path.to_string(),
                message: msg,
            })
        };
        if let Some(ty) = self.ty
            && !ty.accepts(v)
        {
            return fail(format!(
                "expected {}, got {}",
                ty.name(),
                JsonType::of(v).name()
            ));
        }
        if let Some(allowed) = &self.one_of
            && !allowed.contains(v)
        {
            let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
            return fail(format!("must be one of {}", list.join(", ")));
        }
        match v {
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                if let Some(min) = self.minimum
                    && x < min
                {
                    return fail(format!("must be at least {min}, got {n}"));
                }
                if let Some(max) = self.maximum
                    && x > max
                {
                    return fail(format!("must be at most {max}, got {n}"));
                }
            }
            Value::String(s) => {
                let len = s.chars().count();
                if let Some(min) = self.min_length
                    && len < min
                {
                    return fail(format!("must be at least {min} characters, got {len}"));
                }
                if let Some(max) = self.max_length
                    && len > max
                {
                    return fail(format!("must be at most {max} characters, got {len}"));
                }
            }
            Value::Array(items) => {
                if let Some(max) = self.max_items
                    && items.len() > max
                {
                    return fail(format!(
                        "must have at most {max} items, got {}",
                        items.len()
                    ));
                }
                if let Some(item) = &self.items {
                    for (i, x) in items.iter().enumerate() {
                        item.check(x, &format!("{path}[{i}]"))?;
                    }
                }
            }
            Value::Object(map) => {
                for r in &self.required {
                    if !map.contains_key(r) {
                        return fail(format!("missing required field `{r}`"));
                    }
                }
                for (k, x) in map {
                    match self.properties.get(k) {
                        Some(s) => s.check(x, &format!("{path}.{k}"))?,
                        None if self.additional_properties == Some(false) => {
                            let known: Vec<&str> =
                                self.properties.keys().map(String::as_str).collect();
                            return fail(format!(
                                "unknown field `{k}` (allowed: {})",
                                known.join(", ")
                            ));
                        }
                        None => {}
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// How a kind's payloads are checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PayloadRules {
    /// Largest serialised payload accepted, in bytes.
    pub max_bytes: usize,
    /// Schema the payload must satisfy.
    pub schema: Schema,
}

impl Default for PayloadRules {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            schema: Schema::default(),
        }
    }
}

impl PayloadRules {
    /// Rules with the default size limit and this schema.
    pub fn with_schema(schema: Schema) -> Self {
        Self {
            schema,
            ..Default::default()
        }
    }

    /// Checks structure (see [`check_structure`]), size, then schema.
    pub fn validate(&self, payload: &Value) -> Result<(), PayloadError> {
        check_structure(payload, "payload")?;
        let size = serde_json::to_vec(payload)
            .map(|b| b.len())
            .unwrap_or(usize::MAX);
        if size > self.max_bytes {
            return Err(PayloadError::TooLarge {
                size,
                limit: self.max_bytes,
            });
        }
        self.schema.validate(payload)
    }
}

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The payload is not JSON.
    #[error("payload is not valid JSON: {0}")]
    NotJson(String),
    /// Over the size limit.
    #[error("payload is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Serialised size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A schema violation at `path`.
    #[error("{path}: {message}")]
    Invalid {
        /// Where, as `payload.field[2].sub`.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Parses a payload given as text, refusing what [`check_structure`] refuses.
pub fn parse(text: &str) -> Result<Value, PayloadError> {
    let value = serde_json::from_str(text).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    check_structure(&value, "payload")?;
    Ok(value)
}

/// Checks what every store must be able to hold and read back, whatever the kind's
/// rules: nesting no deeper than [`MAX_PAYLOAD_DEPTH`], and no NUL character in any
/// string or object key (Postgres cannot store one; SQLite would, so the stores would
/// disagree). `root` names the value in errors (`payload`, `output`); the error names
/// the path where the limit was crossed or the NUL found, as `payload.a.b[2]`.
///
/// Iterative, so that the check itself cannot overflow the stack on a value built in
/// code (a parsed one is already bounded by serde_json's own recursion limit).
pub fn check_structure(value: &Value, root: &str) -> Result<(), PayloadError> {
    let mut stack: Vec<(&Value, String, usize)> = vec![(value, root.to_string(), 1)];
    while let Some((v, path, depth)) = stack.pop() {
        let deeper = |path: &str| {
            Err(PayloadError::Invalid {
                path: path.to_string(),
                message: format!("nested deeper than {MAX_PAYLOAD_DEPTH} levels"),
            })
        };
        match v {
            Value::String(s) if s.contains('\0') => return Err(nul(&path, "string".into())),
            Value::Array(items) => {
                if depth > MAX_PAYLOAD_DEPTH {
                    return deeper(&path);
                }
                for (i, x) in items.iter().enumerate().rev() {
                    stack.push((x, format!("{path}[{i}]"), depth + 1));
                }
            }
            Value::Object(map) => {
                if depth > MAX_PAYLOAD_DEPTH {
                    return deeper(&path);
                }
                let mut children = Vec::with_capacity(map.len());
                for (k, x) in map {
                    if k.contains('\0') {
                        return Err(nul(&path, format!("key {k:?}")));
                    }
                    children.push((x, format!("{path}.{k}"), depth + 1));
                }
                stack.extend(children.into_iter().rev());
            }
            _ => {}
        }
    }
    Ok(())
}

/// Makes a value that a handler or the node produced (an output, an event detail)
/// storable on every store instead of refusing it (the attempt it records has already
/// run): each NUL character in a string or key becomes U+FFFD, and a value nested
/// deeper than [`MAX_PAYLOAD_DEPTH`] is replaced whole by a string saying so.
pub fn make_storable(value: &mut Value) {
    if let Err(PayloadError::Invalid { path, message }) = check_structure(value, "output")
        && message.starts_with("nested deeper")
    {
        *value = Value::String(format!("(not stored: {path} is {message})"));
        return;
    }
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
            Value::Array(items) => stack.extend(items.iter_mut()),
            Value::Object(map) => {
                if map.keys().any(|k| k.contains('\0')) {
                    *map = std::mem::take(map)
                        .into_iter()
                        .map(|(k, v)| (k.replace('\0', "\u{FFFD}"), v))
                        .collect();
                }
                stack.extend(map.values_mut());
            }
            _ => {}
        }
    }
}

fn nul(path: &str, what: String) -> PayloadError {
    PayloadError::Invalid {
        path: path.to_string(),
        message: format!("{what} contains a NUL character (\\u0000), which no store can hold"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn email() -> Schema {
        Schema::object(
            &["to"],
            [
                (
                    "to",
                    Schema {
                        ty: Some(JsonType::String),
                        min_length: Some(3),
                        ..Default::default()
                    },
                ),
                (
                    "retries",
                    Schema {
                        ty: Some(JsonType::Integer),
                        minimum: Some(0.0),
                        maximum: Some(5.0),
                        ..Default::default()
                    },
                ),
                ("tags", Schema::array_of(Schema::of_type(JsonType::String))),
            ],
        )
    }

    #[test]
    fn accepts_valid_payloads() {
        email()
            .validate(&json!({"to": "a@b.c", "retries": 2, "tags": ["x"]}))
            .unwrap();
    }

    #[test]
    fn names_the_offending_field() {
        let s = email();
        let cases = [
            (json!({}), "payload: missing required field `to`"),
            (json!({"to": 5}), "payload.to: expected string, got integer"),
            (
                json!({"to": "ab"}),
                "payload.to: must be at least 3 characters, got 2",
            ),
            (
                json!({"to": "abc", "retries": 9}),
                "payload.retries: must be at most 5, got 9",
            ),
            (
                json!({"to": "abc", "tags": ["x", 1]}),
                "payload.tags[1]: expected string, got integer",
            ),
            (
                json!({"to": "abc", "cc": "x"}),
                "payload: unknown field `cc` (allowed: retries, tags, to)",
            ),
            (json!([1]), "payload: expected object, got array"),
        ];
        for (v, want) in cases {
            assert_eq!(s.validate(&v).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn enforces_size_limit() {
        let rules = PayloadRules {
            max_bytes: 10,
            schema: Schema::default(),
        };
        let err = rules.validate(&json!({"data": "0123456789"})).unwrap_err();
        assert!(
            matches!(err, PayloadError::TooLarge { limit: 10, .. }),
            "{err}"
        );
    }

    #[test]
    fn schemas_load_from_toml() {
        let rules: PayloadRules = toml::from_str(
            r#"
            max_bytes = 1024
            [schema]
            type = "object"
            required = ["url"]
            properties.url = { type = "string", max_length = 2048 }
            "#,
        )
        .unwrap();
        assert!(rules.validate(&json!({"url": "http://x"})).is_ok());
        assert!(rules.validate(&json!({"uri": "http://x"})).is_err());
    }

    /// `{"a": {"a": ... 1}}` with `n` objects.
    fn nested(n: usize) -> Value {
        (0..n).fold(json!(1), |v, _| json!({ "a": v }))
    }

    #[test]
    fn refuses_payloads_nested_too_deep_naming_the_path() {
        let rules = PayloadRules::default();
        rules.validate(&nested(MAX_PAYLOAD_DEPTH)).unwrap();
        let err = rules.validate(&nested(MAX_PAYLOAD_DEPTH + 1)).unwrap_err();
        let path = format!("payload{}", ".a".repeat(MAX_PAYLOAD_DEPTH));
        assert_eq!(
            err.to_string(),
            format!("{path}: nested deeper than {MAX_PAYLOAD_DEPTH} levels")
        );
        // Arrays count too, and `parse` refuses what `validate` refuses.
        let text = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("payload[0][0]"), "{err}");
        assert!(err.contains("nested deeper than 64 levels"), "{err}");
        // A payload serde_json itself cannot read is refused as not JSON, never accepted.
        let text = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(parse(&text), Err(PayloadError::NotJson(_))));
    }

    #[test]
    fn refuses_nul_in_strings_and_keys_naming_the_path() {
        let rules = PayloadRules::default();
        let err = rules
            .validate(&json!({"a": {"b": ["x", "y", "z\u{0}"]}}))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("payload.a.b[2]: string contains a NUL"),
            "{err}"
        );
        let err = parse(r#"{"a": {"k\u0000": 1}}"#).unwrap_err().to_string();
        assert!(
            err.starts_with("payload.a: key \"k\\0\" contains a NUL"),
            "{err}"
        );
        assert!(parse(r#""\u0000""#).is_err());
        parse(r#"{"a": "\\u0000 spelled out is fine"}"#).unwrap();
    }

    #[test]
    fn make_storable_scrubs_nul_and_replaces_what_is_too_deep() {
        let mut v = json!({"a\u{0}": ["x\u{0}y", {"k": "\u{0}"}]});
        make_storable(&mut v);
        assert_eq!(v, json!({"a\u{FFFD}": ["x\u{FFFD}y", {"k": "\u{FFFD}"}]}));
        check_structure(&v, "output").unwrap();
        let mut deep = nested(MAX_PAYLOAD_DEPTH + 1);
        make_storable(&mut deep);
        let text = deep.as_str().unwrap();
        assert!(text.starts_with("(not stored: output.a.a"), "{text}");
        let mut fine = nested(3);
        make_storable(&mut fine);
        assert_eq!(fine, nested(3));
    }
}

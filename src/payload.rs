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

    /// Checks size, then schema.
    pub fn validate(&self, payload: &Value) -> Result<(), PayloadError> {
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

/// Parses a payload given as text.
pub fn parse(text: &str) -> Result<Value, PayloadError> {
    serde_json::from_str(text).map_err(|e| PayloadError::NotJson(e.to_string()))
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
}

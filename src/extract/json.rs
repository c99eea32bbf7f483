//! TEMPORARY STUB (to be replaced by the scanner): serde_json-backed pointer lookup.
use std::borrow::Cow;
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPointer {
    text: String,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointerError {
    pub pointer: String,
    pub reason: &'static str,
}
impl std::fmt::Display for PointerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid JSON pointer {:?}: {}",
            self.pointer, self.reason
        )
    }
}
impl std::error::Error for PointerError {}
impl JsonPointer {
    pub fn parse(pointer: &str) -> Result<JsonPointer, PointerError> {
        if !pointer.starts_with('/') {
            return Err(PointerError {
                pointer: pointer.into(),
                reason: "must start with '/'",
            });
        }
        Ok(JsonPointer {
            text: pointer.into(),
        })
    }
    pub fn as_str(&self) -> &str {
        &self.text
    }
}
#[derive(Debug, Clone, PartialEq)]
pub enum JsonScalar<'a> {
    String(Cow<'a, str>),
    Number(&'a str),
    Bool(bool),
    Null,
    Object,
    Array,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    Syntax { offset: usize },
    NotUtf8,
    TooDeep,
}
impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
impl std::error::Error for JsonError {}
pub fn find<'a>(
    document: &'a [u8],
    pointer: &JsonPointer,
) -> Result<Option<JsonScalar<'a>>, JsonError> {
    let value: serde_json::Value =
        serde_json::from_slice(document).map_err(|_| JsonError::Syntax { offset: 0 })?;
    Ok(value.pointer(&pointer.text).map(|v| match v {
        serde_json::Value::String(s) => JsonScalar::String(Cow::Owned(s.clone())),
        serde_json::Value::Number(n) => {
            JsonScalar::Number(Box::leak(n.to_string().into_boxed_str()))
        }
        serde_json::Value::Bool(b) => JsonScalar::Bool(*b),
        serde_json::Value::Null => JsonScalar::Null,
        serde_json::Value::Object(_) => JsonScalar::Object,
        serde_json::Value::Array(_) => JsonScalar::Array,
    }))
}

//! `${VAR}` substitution: every string value of the parsed TOML, before it is deserialized, so
//! an unset variable is reported with the key that names it.

use super::ConfigError;

/// Replaces `${VAR}` in every string value; `$${` stands for a literal `${`.
pub(super) fn substitute_env(
    value: &mut toml::Value,
    key: String,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(text) => {
            *text = expand_env(text, &key, lookup_env)?;
        }
        toml::Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                substitute_env(item, format!("{key}[{index}]"), lookup_env)?;
            }
        }
        toml::Value::Table(table) => {
            for (child_key, child) in table.iter_mut() {
                substitute_env(child, format!("{key}.{child_key}"), lookup_env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Expands the references in one string value; `key` names it in errors.
fn expand_env(
    text: &str,
    key: &str,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut expanded = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = rest.find('$') {
        expanded.push_str(&rest[..position]);
        let after = &rest[position..];
        if let Some(stripped) = after.strip_prefix("$${") {
            expanded.push_str("${");
            rest = stripped;
        } else if let Some(stripped) = after.strip_prefix("${") {
            let Some(end) = stripped.find('}') else {
                return Err(ConfigError::invalid(key, "unterminated ${ in value"));
            };
            let variable = &stripped[..end];
            let valid_name = !variable.is_empty()
                && variable
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
            if !valid_name {
                return Err(ConfigError::invalid(
                    key,
                    format!("`${{{variable}}}` is not a valid environment variable reference"),
                ));
            }
            let value = lookup_env(variable).ok_or_else(|| ConfigError::MissingEnv {
                key: key.to_owned(),
                variable: variable.to_owned(),
            })?;
            expanded.push_str(&value);
            rest = &stripped[end + 1..];
        } else {
            expanded.push('$');
            rest = &after[1..];
        }
    }
    expanded.push_str(rest);
    Ok(expanded)
}

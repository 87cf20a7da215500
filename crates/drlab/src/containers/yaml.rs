//! Writes a JSON value as block-style YAML, the form Compose files are read in. Strings are
//! always double-quoted (JSON escapes are YAML escapes), so no value is misread as a number,
//! boolean or null.

use serde_json::Value;

/// The YAML text of `value` (an object at the top).
pub fn to_yaml(value: &Value) -> String {
    let mut lines = Vec::new();
    block(value, &mut lines);
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The lines of a value written as a block (objects and arrays) or one scalar line.
fn block(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, v) in map {
                let key = self::key(key);
                if is_block(v) {
                    out.push(format!("{key}:"));
                    out.extend(nested(v));
                } else {
                    out.push(format!("{key}: {}", scalar(v)));
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                if is_block(item) {
                    let mut inner = Vec::new();
                    block(item, &mut inner);
                    for (i, line) in inner.into_iter().enumerate() {
                        out.push(if i == 0 {
                            format!("- {line}")
                        } else {
                            format!("  {line}")
                        });
                    }
                } else {
                    out.push(format!("- {}", scalar(item)));
                }
            }
        }
        other => out.push(scalar(other)),
    }
}

fn nested(value: &Value) -> Vec<String> {
    let mut inner = Vec::new();
    block(value, &mut inner);
    inner.into_iter().map(|l| format!("  {l}")).collect()
}

fn is_block(value: &Value) -> bool {
    match value {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

fn key(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if plain {
        key.to_string()
    } else {
        Value::String(key.to_string()).to_string()
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_arrays_and_quoted_strings_as_block_yaml() {
        let v = json!({
            "version": "3.7",
            "services": {"ss1": {
                "command": ["sh", "-c", "a && b"],
                "networks": {"dc1": {"ipv4_address": "172.30.1.10"}},
                "cap_add": [],
                "healthcheck": {"retries": 30, "disable": false},
            }},
            "networks": {"dc1": {"ipam": {"config": [{"subnet": "172.30.1.0/24", "x": "y"}]}}},
            "odd key": null,
        });
        let want = r#"version: "3.7"
services:
  ss1:
    command:
      - "sh"
      - "-c"
      - "a && b"
    networks:
      dc1:
        ipv4_address: "172.30.1.10"
    cap_add: []
    healthcheck:
      retries: 30
      disable: false
networks:
  dc1:
    ipam:
      config:
        - subnet: "172.30.1.0/24"
          x: "y"
"odd key": null
"#;
        assert_eq!(to_yaml(&v), want);
    }
}

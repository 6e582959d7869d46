//! [`Validators`]: the compiled argument schemas of remote task types, rebuilt when a type's
//! schema changes.

use jsonschema::Validator;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Most errors listed in one 422 message.
const MAX_ERRORS: usize = 5;

/// Compiled schemas by task name.
#[derive(Default)]
pub(crate) struct Validators {
    compiled: Mutex<HashMap<String, (Value, Arc<Validator>)>>,
}

impl Validators {
    /// Whether `schema` is a JSON Schema errand can check arguments with (no external
    /// references); the reason when it is not.
    pub fn check_schema(&self, schema: &Value) -> Result<(), String> {
        jsonschema::validator_for(schema)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Checks `args` against task `name`'s `schema`; the first errors, each with where it is,
    /// when they do not fit.
    pub fn validate(&self, name: &str, schema: &Value, args: &Value) -> Result<(), String> {
        let validator = self.compiled(name, schema)?;
        let errors: Vec<String> = validator
            .iter_errors(args)
            .take(MAX_ERRORS)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("at {at}: {e}")
                }
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    fn compiled(&self, name: &str, schema: &Value) -> Result<Arc<Validator>, String> {
        let mut compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((known, v)) = compiled.get(name)
            && known == schema
        {
            return Ok(v.clone());
        }
        let v = Arc::new(
            jsonschema::validator_for(schema)
                .map_err(|e| format!("the task type's argument schema cannot be used: {e}"))?,
        );
        compiled.insert(name.to_string(), (schema.clone(), v.clone()));
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_are_checked_and_errors_say_where() {
        let v = Validators::default();
        let schema = json!({"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]});
        assert!(v.validate("t", &schema, &json!({"title": "x"})).is_ok());
        let err = v.validate("t", &schema, &json!({"title": 3})).unwrap_err();
        assert!(err.contains("/title"), "{err}");
        assert!(
            v.validate("t", &schema, &json!({}))
                .unwrap_err()
                .contains("title")
        );
        let other = json!({"type": "array"});
        assert!(
            v.validate("t", &other, &json!([])).is_ok(),
            "a changed schema is recompiled"
        );
        assert!(v.check_schema(&json!({"type": 12})).is_err());
    }
}

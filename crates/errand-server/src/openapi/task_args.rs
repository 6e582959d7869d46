//! The registry's tasks in the document: each task's argument schema (schemars, JSON Schema
//! 2020-12) becomes the component `<task>Args`, its `$defs` become components of their own
//! (`<task>Args.<Def>`) with every `$ref` rewritten to point at them, and the body of
//! `POST /v1/tasks` becomes one of `SubmitRequest.<task>`: the generic request with `name`
//! fixed to the task's name and `args` referring to `<task>Args`, so a client (or a test
//! generator) knows what `args` each `name` takes.
//!
//! OpenAPI 3.1's schema dialect is JSON Schema 2020-12, so a schema moves as it is but for its
//! `$schema`, `$id` and `$defs`. Component names keep only the characters OpenAPI allows
//! (`A-Z a-z 0-9 . - _`); one that would be taken already gets a numeric suffix.

use super::SUBMIT_TASK;
use errand_core::TaskType;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};

/// Where components are referred to from.
const COMPONENTS: &str = "#/components/schemas/";
/// The generic request body's component (see `tasks::SubmitRequest`).
const SUBMIT_REQUEST: &str = "SubmitRequest";

/// Adds the tasks' argument schemas to `doc` and makes the submission body one of them. With
/// no task registered, the body stays the generic request.
pub(super) fn add(doc: &mut Value, tasks: &[TaskType]) {
    if tasks.is_empty() {
        return;
    }
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        tracing::error!("the OpenAPI document has no schemas; task arguments are not listed");
        return;
    };
    let Some(generic) = schemas.get(SUBMIT_REQUEST).cloned() else {
        tracing::error!("the OpenAPI document has no SubmitRequest; task arguments are not listed");
        return;
    };
    let mut taken: HashSet<String> = schemas.keys().cloned().collect();
    let mut variants = Vec::new();
    let mut mapping = Map::new();
    for task in tasks {
        let args = unique_name(&mut taken, &format!("{}Args", component_name(&task.name)));
        schemas.extend(task_schemas(&args, &task.schema, &mut taken));
        let variant = unique_name(
            &mut taken,
            &format!("{SUBMIT_REQUEST}.{}", component_name(&task.name)),
        );
        schemas.insert(variant.clone(), submission(&generic, &task.name, &args));
        let reference = format!("{COMPONENTS}{variant}");
        mapping.insert(task.name.to_string(), Value::String(reference.clone()));
        variants.push(json!({ "$ref": reference }));
    }
    let body = json!({
        "oneOf": variants,
        "discriminator": { "propertyName": "name", "mapping": mapping },
    });
    match submit_schema(doc) {
        Some(schema) => *schema = body,
        None => tracing::error!(
            "the OpenAPI document has no {SUBMIT_TASK} operation; task arguments are not listed"
        ),
    }
}

/// The generic request with `name` fixed to `task` and `args` referring to `args`.
fn submission(generic: &Value, task: &str, args: &str) -> Value {
    let mut variant = generic.clone();
    if let Some(object) = variant.as_object_mut() {
        object.insert("title".into(), Value::String(format!("Submit {task}")));
        object.remove("description");
    }
    if let Some(properties) = variant.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert(
            "name".into(),
            json!({ "type": "string", "const": task, "description": "The task's name." }),
        );
        properties.insert(
            "args".into(),
            json!({ "$ref": format!("{COMPONENTS}{args}") }),
        );
    }
    variant
}

/// The schema of the submission's body.
fn submit_schema(doc: &mut Value) -> Option<&mut Value> {
    let paths = doc.get_mut("paths")?.as_object_mut()?;
    let operation = paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .find(|operation| operation["operationId"] == SUBMIT_TASK)?;
    operation.pointer_mut("/requestBody/content/application~1json/schema")
}

/// The components of one task's argument schema: the schema itself as `args`, and each of its
/// `$defs` under a name not `taken` yet (then taken), with every `$ref` rewritten to the
/// components.
fn task_schemas(args: &str, schema: &Value, taken: &mut HashSet<String>) -> Vec<(String, Value)> {
    let mut root = match schema {
        Value::Bool(true) => json!({}),
        Value::Bool(false) => json!({ "not": {} }),
        other => other.clone(),
    };
    let mut defs = Map::new();
    if let Some(object) = root.as_object_mut() {
        for keyword in ["$schema", "$id"] {
            object.remove(keyword);
        }
        for keyword in ["$defs", "definitions"] {
            if let Some(Value::Object(found)) = object.remove(keyword) {
                defs.extend(found);
            }
        }
    }
    let names: HashMap<String, String> = defs
        .keys()
        .map(|def| {
            let name = unique_name(taken, &format!("{args}.{}", component_name(def)));
            (def.clone(), name)
        })
        .collect();
    let mut out = vec![(args.to_string(), root)];
    out.extend(
        defs.into_iter()
            .filter_map(|(def, schema)| Some((names.get(&def)?.clone(), schema))),
    );
    for (_, schema) in &mut out {
        rewrite_refs(schema, args, &names);
    }
    out
}

/// Rewrites the local `$ref`s of a schema that moved to the component `args`, whose `$defs`
/// moved to the components `names`.
fn rewrite_refs(value: &mut Value, args: &str, names: &HashMap<String, String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                match (key.as_str(), child) {
                    ("$ref", Value::String(reference)) => {
                        if let Some(moved) = moved_ref(reference, args, names) {
                            *reference = moved;
                        }
                    }
                    (_, child) => rewrite_refs(child, args, names),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite_refs(item, args, names);
            }
        }
        _ => {}
    }
}

/// Where a local `$ref` points once its schema is the component `args`; `None` for a
/// reference that is not local (left as it is).
fn moved_ref(reference: &str, args: &str, names: &HashMap<String, String>) -> Option<String> {
    let pointer = reference.strip_prefix('#')?;
    for keyword in ["/$defs/", "/definitions/"] {
        if let Some(rest) = pointer.strip_prefix(keyword) {
            let (segment, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let def = segment.replace("~1", "/").replace("~0", "~");
            if let Some(name) = names.get(&def) {
                return Some(format!("{COMPONENTS}{name}{tail}"));
            }
        }
    }
    Some(format!("{COMPONENTS}{args}{pointer}"))
}

/// `name` with every character OpenAPI does not allow in a component name replaced by `_`.
fn component_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "_".into()
    } else {
        cleaned
    }
}

/// `wanted`, or else `wanted_2`, `wanted_3`...: the first name not `taken`, which it then takes.
fn unique_name(taken: &mut HashSet<String>, wanted: &str) -> String {
    let mut name = wanted.to_string();
    let mut n = 1;
    while taken.contains(&name) {
        n += 1;
        name = format!("{wanted}_{n}");
    }
    taken.insert(name.clone());
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_follow_the_moved_definitions() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Chat",
            "type": "object",
            "properties": {
                "messages": { "type": "array", "items": { "$ref": "#/$defs/Message" } },
                "again": { "$ref": "#" },
                "first": { "$ref": "#/properties/messages/items" },
                "remote": { "$ref": "https://example.invalid/schema.json" },
            },
            "$defs": {
                "Message": { "type": "object", "properties": { "reply": { "$ref": "#/$defs/Message" } } },
                "a/b c": { "type": "string" },
            },
        });
        let mut taken = HashSet::from(["chatArgs".to_string()]);
        let out: HashMap<String, Value> = task_schemas("chatArgs", &schema, &mut taken)
            .into_iter()
            .collect();
        let root = &out["chatArgs"];
        assert!(root.get("$schema").is_none() && root.get("$defs").is_none());
        assert_eq!(
            root["properties"]["messages"]["items"]["$ref"],
            "#/components/schemas/chatArgs.Message"
        );
        assert_eq!(
            root["properties"]["again"]["$ref"],
            "#/components/schemas/chatArgs"
        );
        assert_eq!(
            root["properties"]["first"]["$ref"],
            "#/components/schemas/chatArgs/properties/messages/items"
        );
        assert_eq!(
            root["properties"]["remote"]["$ref"],
            "https://example.invalid/schema.json"
        );
        assert_eq!(
            out["chatArgs.Message"]["properties"]["reply"]["$ref"],
            "#/components/schemas/chatArgs.Message"
        );
        assert_eq!(out["chatArgs.a_b_c"], json!({ "type": "string" }));
    }

    #[test]
    fn names_are_cleaned_and_never_reused() {
        assert_eq!(component_name("send email/v2"), "send_email_v2");
        assert_eq!(component_name(""), "_");
        let mut taken = HashSet::from(["xArgs".to_string(), "xArgs_2".to_string()]);
        assert_eq!(unique_name(&mut taken, "xArgs"), "xArgs_3");
        assert_eq!(unique_name(&mut taken, "xArgs"), "xArgs_4");
        assert_eq!(unique_name(&mut taken, "yArgs"), "yArgs");
        assert_eq!(
            task_schemas("a", &Value::Bool(false), &mut taken),
            vec![("a".to_string(), json!({ "not": {} }))]
        );
    }
}

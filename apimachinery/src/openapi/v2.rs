//! The Swagger 2.0 document served at `/openapi/v2`.

use serde_json::{Map, Value, json};

use crate::schema;

use super::params::Param;
use super::routes::{Body, Operation, Route};
use super::{INFO_TITLE, INFO_VERSION, security_scheme};

fn param(p: &Param) -> Value {
    let mut v = json!({
        "description": p.description,
        "in": match p.location {
            super::params::In::Path => "path",
            super::params::In::Query => "query",
        },
        "name": p.name,
        "type": p.ty.name(),
        "uniqueItems": true,
    });
    if p.required() {
        v["required"] = json!(true);
    }
    v
}

fn schema_of(body: &Body) -> Value {
    match body {
        Body::Definition(name) => json!({"$ref": format!("{}{name}", schema::REF_PREFIX)}),
        Body::Text => json!({"type": "string"}),
    }
}

pub(super) fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        _ => "Unauthorized",
    }
}

fn operation(op: &Operation) -> Value {
    let mut parameters = Vec::new();
    if let Some((body, required)) = &op.body {
        let mut b = json!({"in": "body", "name": "body", "schema": schema_of(body)});
        if *required {
            b["required"] = json!(true);
        }
        parameters.push(b);
    }
    parameters.extend(op.params.iter().map(param));
    let mut responses = Map::new();
    for (code, body) in &op.responses {
        responses.insert(
            code.to_string(),
            json!({"description": status_text(*code), "schema": schema_of(body)}),
        );
    }
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    let mut v = json!({
        "consumes": op.consumes.map_or_else(|| vec!["*/*"], <[&str]>::to_vec),
        "description": op.description,
        "operationId": op.id,
        "produces": op.produces.media_types(),
        "responses": responses,
        "schemes": ["https"],
        "tags": [op.tag],
    });
    if !parameters.is_empty() {
        v["parameters"] = Value::Array(parameters);
    }
    if !op.action.is_empty() {
        v["x-kubernetes-action"] = json!(op.action);
    }
    if let Some((g, ver, k)) = &op.gvk {
        v["x-kubernetes-group-version-kind"] = json!({"group": g, "kind": k, "version": ver});
    }
    v
}

/// Path items keyed by path.
fn paths(routes: &[Route]) -> Map<String, Value> {
    let mut paths = Map::new();
    for route in routes {
        let mut item = Map::new();
        if !route.params.is_empty() {
            item.insert(
                "parameters".into(),
                Value::Array(route.params.iter().map(param).collect()),
            );
        }
        for op in &route.operations {
            item.insert(op.method.into(), operation(op));
        }
        paths.insert(route.path.clone(), Value::Object(item));
    }
    paths
}

/// The whole document.
pub(super) fn document(routes: &[Route]) -> Value {
    json!({
        "swagger": "2.0",
        "info": {"title": INFO_TITLE, "version": INFO_VERSION},
        "paths": paths(routes),
        "definitions": schema::definitions(),
        "securityDefinitions": {"BearerToken": security_scheme()},
        "security": [{"BearerToken": []}],
    })
}

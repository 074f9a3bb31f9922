//! get and list.

use base64::Engine;
use http::Response;
use serde_json::{Value, json};
use skiff_apimachinery::selectors::{FieldSelector, LabelSelector};
use skiff_apimachinery::{Resource, table};

use super::{Ctx, include_object, partial_metadata};
use crate::negotiate::Output;
use crate::objects;
use crate::response::{self, Body};
use crate::status::ApiError;

pub async fn get(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let obj = ctx
        .api
        .objects
        .must_get(ctx.res, ctx.ns(), ctx.name()?)
        .await?;
    Ok(ctx.render(200, &obj))
}

/// Label and field selectors of a list or watch, checked against the resource.
pub struct Selectors {
    pub label: LabelSelector,
    pub field: FieldSelector,
}

impl Selectors {
    pub fn from_query(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let label = LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let field = FieldSelector::parse(ctx.query.get("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        field
            .validate_for(ctx.res)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Self { label, field })
    }

    pub fn is_empty(&self) -> bool {
        self.label.is_empty() && self.field.is_empty()
    }

    pub fn matches(&self, res: &Resource, obj: &Value) -> bool {
        self.label.matches_object(obj) && self.field.matches(res, obj)
    }
}

/// The opaque `continue` token: the last key returned and the list's revision.
fn encode_continue(key: &str, rev: u64) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": key}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str, prefix: &str) -> Result<(String, u64), ApiError> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let key = v["start"].as_str().ok_or_else(bad)?;
    let rev = v["rv"].as_u64().ok_or_else(bad)?;
    if !key.starts_with(prefix) {
        return Err(bad());
    }
    Ok((key.to_string(), rev))
}

pub async fn list(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let selectors = Selectors::from_query(ctx)?;
    let limit = match ctx.query.number("limit")? {
        Some(n) if n > 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        _ => None,
    };
    let prefix = objects::prefix(ctx.res, ctx.ns());
    let mut start = match ctx.query.get("continue") {
        Some(token) => {
            let (key, rev) = decode_continue(token, &prefix)?;
            let floor = ctx.api.objects.store().compacted_revision();
            if rev < floor {
                return Err(ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ));
            }
            Some(key)
        }
        None => None,
    };
    // JSON lists are assembled from the stored bytes (only `resourceVersion` is spliced in);
    // other representations need the objects parsed.
    let raw_json = ctx.output == Output::Json;
    let mut raw_items: Vec<Vec<u8>> = Vec::new();
    let mut items = Vec::new();
    let mut revision;
    let mut more;
    let mut remaining;
    // Read pages until `limit` matching items are found or the prefix is exhausted.
    loop {
        let found = if raw_json {
            raw_items.len()
        } else {
            items.len()
        };
        let want = limit.map(|l| l - found);
        let page = ctx
            .api
            .objects
            .list_raw(ctx.res, ctx.ns(), start.as_deref(), want)
            .await?;
        revision = page.revision;
        more = page.more;
        remaining = page.remaining;
        start = page.items.last().map(|kv| kv.key.clone());
        for kv in &page.items {
            if raw_json {
                if !selectors.is_empty()
                    && !selectors.matches(ctx.res, &objects::from_kv(ctx.res, kv)?)
                {
                    continue;
                }
                raw_items.push(objects::raw_from_kv(ctx.res, kv)?);
            } else {
                let obj = objects::from_kv(ctx.res, kv)?;
                if selectors.matches(ctx.res, &obj) {
                    items.push(obj);
                }
            }
        }
        let found = if raw_json {
            raw_items.len()
        } else {
            items.len()
        };
        if !more || limit.is_none_or(|l| found >= l) {
            break;
        }
    }
    let mut list_meta = json!({"resourceVersion": revision.to_string()});
    if more && let Some(last) = &start {
        list_meta["continue"] = json!(encode_continue(last, revision));
        // Omitted when the store did not count them all, as Kubernetes omits it when inexact.
        if selectors.is_empty()
            && let Some(remaining) = remaining
        {
            list_meta["remainingItemCount"] = json!(remaining);
        }
    }
    if raw_json {
        return Ok(raw_list(ctx, &list_meta, &raw_items));
    }
    let body = match ctx.output {
        Output::Table => table::table(
            ctx.res,
            &items,
            include_object(&ctx.query),
            ctx.now(),
            list_meta,
        ),
        Output::Metadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list_meta,
            "items": items.iter().map(partial_metadata).collect::<Vec<_>>(),
        }),
        _ => json!({
            "kind": ctx.res.list_kind(),
            "apiVersion": ctx.res.api_version(),
            "metadata": list_meta,
            "items": items,
        }),
    };
    Ok(response::object(200, ctx.output, &body))
}

/// `{"kind":..,"apiVersion":..,"metadata":..,"items":[..]}` from already-encoded items.
fn raw_list(ctx: &Ctx<'_>, list_meta: &Value, items: &[Vec<u8>]) -> Response<Body> {
    let head = json!({"kind": ctx.res.list_kind(), "apiVersion": ctx.res.api_version(), "metadata": list_meta});
    let head = serde_json::to_vec(&head).unwrap_or_default();
    let size = head.len() + items.iter().map(|i| i.len() + 1).sum::<usize>() + 16;
    let mut body = Vec::with_capacity(size);
    // `head` is an object: reopen it to append the items.
    body.extend_from_slice(&head[..head.len().saturating_sub(1)]);
    body.extend_from_slice(b",\"items\":[");
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    response::bytes(200, "application/json", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_are_checked() {
        let t = encode_continue("/pods/default/web-1", 42);
        assert_eq!(
            decode_continue(&t, "/pods/default/").unwrap(),
            ("/pods/default/web-1".to_string(), 42)
        );
        assert_eq!(decode_continue(&t, "/secrets/").unwrap_err().code, 400);
        assert_eq!(decode_continue("!!", "/pods/").unwrap_err().code, 400);
    }
}

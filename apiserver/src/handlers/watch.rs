//! watch: a stream of `{"type": ..., "object": ...}` lines, one per change.
//!
//! Without a resourceVersion (or with "0", or with `sendInitialEvents=true`) the watch first
//! sends the current objects as ADDED, then the changes after that list. From a given
//! resourceVersion it sends the changes after it, or one ERROR event with a 410 `Status` if that
//! version is older than the oldest change still held.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use skiff_apimachinery::{Resource, table};
use skiff_store::{EventKind, KeyValue, StoreError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::read::Selectors;
use super::{Ctx, include_object, partial_metadata};
use crate::negotiate::Output;
use crate::objects::{self, from_kv, parse_rv};
use crate::response::Body;
use crate::status::ApiError;

/// How often an idle watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);

/// Encodes events for one watch in the negotiated representation.
struct Encoder {
    res: &'static Resource,
    output: Output,
    include: table::IncludeObject,
    first_table: bool,
}

impl Encoder {
    fn event(&mut self, kind: &str, obj: &Value) -> Bytes {
        let object = match self.output {
            Output::Table => {
                let mut t =
                    table::watch_row_table(self.res, obj, self.include, jiff::Timestamp::now());
                if !self.first_table
                    && let Some(m) = t.as_object_mut()
                {
                    m.remove("columnDefinitions");
                }
                self.first_table = false;
                serde_json::to_vec(&t)
            }
            Output::Metadata => serde_json::to_vec(&partial_metadata(obj)),
            _ => serde_json::to_vec(obj),
        };
        framed(kind, &object.unwrap_or_default())
    }

    /// Whether events can be made from the stored bytes: full objects as JSON, no table or
    /// metadata view.
    fn passes_stored_bytes(&self) -> bool {
        matches!(self.output, Output::Json | Output::Yaml)
    }

    /// An event whose object is the stored JSON with its `resourceVersion` spliced in, without
    /// building a `serde_json::Value`: watchers without selectors (every informer) cost a copy
    /// per event, not a parse and an encode.
    fn stored_event(&self, kind: &str, kv: &KeyValue) -> Result<Bytes, ApiError> {
        Ok(framed(kind, &objects::raw_from_kv(self.res, kv)?))
    }

    fn bookmark(&self, rev: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rev.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let (api_version, kind) = match self.output {
            Output::Metadata => (
                "meta.k8s.io/v1".to_string(),
                "PartialObjectMetadata".to_string(),
            ),
            _ => (self.res.api_version(), self.res.kind.to_string()),
        };
        line(
            &json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": meta}}),
        )
    }
}

/// One watch line, `{"type": kind, "object": <object JSON>}`, from the object's encoded JSON.
fn framed(kind: &str, object: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(object.len() + kind.len() + 24);
    b.extend_from_slice(b"{\"type\":\"");
    b.extend_from_slice(kind.as_bytes());
    b.extend_from_slice(b"\",\"object\":");
    b.extend_from_slice(object);
    b.extend_from_slice(b"}\n");
    Bytes::from(b)
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

fn error_event(e: &ApiError) -> Bytes {
    line(&json!({"type": "ERROR", "object": e.to_status()}))
}

pub async fn watch(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let selectors = Selectors::from_query(ctx)?;
    let res = ctx.res;
    let store = ctx.api.objects.store().clone();
    let prefix = match &ctx.name {
        // A watch on one object (`fieldSelector=metadata.name=x` is the usual form, but the
        // path form exists too).
        Some(name) => objects::key(res, ctx.ns(), name),
        None => objects::prefix(res, ctx.ns()),
    };
    let rv = ctx.query.get("resourceVersion");
    let send_initial = ctx.query.flag("sendInitialEvents");
    let bookmarks = ctx.query.flag("allowWatchBookmarks");
    if send_initial && !bookmarks {
        return Err(ApiError::invalid(
            "WatchOptions",
            res,
            "",
            vec![crate::status::StatusCause {
                reason: "FieldValueForbidden".into(),
                message:
                    "Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true"
                        .into(),
                field: "allowWatchBookmarks".into(),
            }],
        ));
    }
    let timeout = match ctx.query.number("timeoutSeconds")? {
        Some(t) if t > 0 => Duration::from_secs(u64::try_from(t).unwrap_or(1800)),
        _ => Duration::from_secs(1800 + u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 7),
    };
    let mut encoder = Encoder {
        res,
        output: ctx.output,
        include: include_object(&ctx.query),
        first_table: true,
    };
    let from_stored_bytes = selectors.is_empty() && encoder.passes_stored_bytes();
    // Initial state, then changes after the revision it was read at.
    let mut initial = Vec::new();
    let start = match rv {
        Some(v) if v != "0" && !send_initial => parse_rv(v)?,
        _ => {
            let page = store.list(&prefix, None, None).await?;
            for kv in &page.items {
                if !kv.key.starts_with(&prefix) {
                    continue;
                }
                if from_stored_bytes {
                    initial.push(encoder.stored_event("ADDED", kv)?);
                    continue;
                }
                let obj = from_kv(res, kv)?;
                if selectors.matches(res, &obj) {
                    initial.push(encoder.event("ADDED", &obj));
                }
            }
            page.revision
        }
    };
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
    let stream = store.watch(&prefix, start);
    let name_filter = ctx.name.clone();
    tokio::spawn(async move {
        let send = |b: Bytes| {
            let tx = tx.clone();
            async move { tx.send(Ok(Frame::data(b))).await.is_ok() }
        };
        for b in initial {
            if !send(b).await {
                return;
            }
        }
        if send_initial && !send(encoder.bookmark(start, true)).await {
            return;
        }
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                let _ = send(error_event(&ApiError::from(e))).await;
                return;
            }
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut last_rev = start;
        let mut tick = tokio::time::interval(BOOKMARK_INTERVAL);
        tick.tick().await;
        loop {
            tokio::select! {
                () = &mut deadline => return,
                () = tx.closed() => return,
                _ = tick.tick(), if bookmarks => {
                    if !send(encoder.bookmark(last_rev, false)).await {
                        return;
                    }
                }
                next = stream.next() => {
                    let ev = match next {
                        None => return,
                        Some(Err(StoreError::WatchLagged)) => {
                            let _ = send(error_event(&ApiError::gone("the watch fell behind; re-list and watch again"))).await;
                            return;
                        }
                        Some(Err(e)) => {
                            let _ = send(error_event(&ApiError::from(e))).await;
                            return;
                        }
                        Some(Ok(ev)) => ev,
                    };
                    last_rev = ev.kv.mod_revision;
                    if name_filter.is_some() && !ev.kv.key.eq(&prefix) {
                        continue;
                    }
                    if from_stored_bytes {
                        let kind = match (ev.kind, &ev.prev) {
                            (EventKind::Delete, _) => "DELETED",
                            (EventKind::Put, None) => "ADDED",
                            (EventKind::Put, Some(_)) => "MODIFIED",
                        };
                        let Ok(line) = encoder.stored_event(kind, &ev.kv) else { continue };
                        if !send(line).await {
                            return;
                        }
                        continue;
                    }
                    let Ok(obj) = from_kv(res, &ev.kv) else { continue };
                    let prev = ev.prev.as_ref().and_then(|p| from_kv(res, p).ok());
                    let now_matches = selectors.matches(res, &obj);
                    let was_matching = prev.as_ref().is_some_and(|p| selectors.matches(res, p));
                    let kind = match ev.kind {
                        EventKind::Delete if now_matches || was_matching => "DELETED",
                        EventKind::Delete => continue,
                        EventKind::Put => match (was_matching, now_matches) {
                            (false, true) => "ADDED",
                            (true, true) => "MODIFIED",
                            (true, false) => "DELETED",
                            (false, false) => continue,
                        },
                    };
                    if !send(encoder.event(kind, &obj)).await {
                        return;
                    }
                }
            }
        }
    });
    let body = BodyExt::boxed(StreamBody::new(ReceiverStream::new(rx)));
    let mut resp = Response::new(body);
    // Watch events are JSON lines whatever the object representation.
    let ct = "application/json";
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

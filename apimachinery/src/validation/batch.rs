//! Jobs and CronJobs: counts, completion modes, the generated selector, pod restart policy,
//! and the cron schedule grammar (the five-field standard form and `@` descriptors).

use serde_json::Value;

use super::field::{
    Bad, Cause, Path, go_label_selector, go_string_map, invalid, not_supported, required,
};
use super::meta::{
    selector_matches, validate_annotations, validate_label_selector, validate_labels,
};
use super::names::{IMMUTABLE, IS_NEGATIVE};
use super::pod::validate_pod_template;
use super::{at, int, str_at};

const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";

fn nonneg(spec: &Value, key: &str, path: &Path, errs: &mut Vec<Cause>) {
    if let Some(n) = int(spec, key).filter(|n| *n < 0) {
        errs.push(invalid(&path.child(key), n, IS_NEGATIVE));
    }
}

/// Rules shared by a Job's spec and a CronJob's job template spec.
fn validate_job_spec(spec: &Value, path: &Path) -> Vec<Cause> {
    let mut errs = Vec::new();
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        nonneg(spec, key, path, &mut errs);
    }
    let mode = str_at(spec, "completionMode");
    match mode {
        None | Some("NonIndexed") => {}
        Some("Indexed") => {
            if int(spec, "completions").is_none() {
                errs.push(required(
                    &path.child("completions"),
                    "when completion mode is Indexed",
                ));
            }
        }
        Some(other) => errs.push(not_supported(
            &path.child("completionMode"),
            other,
            &["NonIndexed", "Indexed"],
        )),
    }
    if let Some(p) = str_at(spec, "podReplacementPolicy")
        && p != "Failed"
        && p != "TerminatingOrFailed"
    {
        errs.push(not_supported(
            &path.child("podReplacementPolicy"),
            p,
            &["Failed", "TerminatingOrFailed"],
        ));
    }
    let template = at(spec, &["template"]);
    let tpath = path.child("template");
    let rp_path = tpath.child("spec").child("restartPolicy");
    // The generic "Required value" for an unset restartPolicy is replaced by the Job one.
    errs.extend(
        validate_pod_template(template, &tpath)
            .into_iter()
            .filter(|c| c.field != rp_path.as_str()),
    );
    let rp = str_at(at(template, &["spec"]), "restartPolicy").unwrap_or("");
    if rp != "OnFailure" && rp != "Never" {
        errs.push(required(&rp_path, "valid values: \"OnFailure\", \"Never\""));
    }
    errs
}

pub fn validate_job(obj: &Value) -> Vec<Cause> {
    let spec = at(obj, &["spec"]);
    let path = Path::new("spec");
    let mut errs = Vec::new();
    let sel = spec.get("selector").filter(|v| !v.is_null());
    match sel {
        None => errs.push(required(&path.child("selector"), "")),
        Some(s) => errs.extend(validate_label_selector(Some(s), &path.child("selector"))),
    }
    let labels = at(spec, &["template", "metadata", "labels"]);
    let labels = (!labels.is_null()).then_some(labels);
    if sel.is_some() && !selector_matches(sel, labels) {
        errs.push(invalid(
            &path.child("template").child("metadata").child("labels"),
            Bad::raw(go_string_map(labels)),
            "`selector` does not match template `labels`",
        ));
    }
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    let uid = str_at(at(obj, &["metadata"]), "uid").unwrap_or("");
    if !manual && !uid.is_empty() {
        if labels
            .and_then(|l| l.get(CONTROLLER_UID))
            .and_then(Value::as_str)
            != Some(uid)
        {
            errs.push(invalid(
                &path.child("template").child("metadata").child("labels"),
                Bad::raw(go_string_map(labels)),
                "`batch.kubernetes.io/controller-uid` must match uid",
            ));
        }
        if let Some(s) = sel {
            let generated = serde_json::json!({"matchLabels": {CONTROLLER_UID: uid}});
            if s != &generated {
                errs.push(invalid(
                    &path.child("selector"),
                    Bad::raw(go_label_selector(Some(s))),
                    "`selector` not auto-generated",
                ));
            }
        }
    }
    errs.extend(validate_job_spec(spec, &path));
    errs
}

pub fn validate_job_update(old: &Value, new: &Value) -> Vec<Cause> {
    let path = Path::new("spec");
    let os = at(old, &["spec"]);
    let ns = at(new, &["spec"]);
    let mut errs = Vec::new();
    if os.get("selector") != ns.get("selector") {
        errs.push(invalid(
            &path.child("selector"),
            Bad::raw(go_label_selector(ns.get("selector"))),
            IMMUTABLE,
        ));
    }
    let suspended = ns.get("suspend").and_then(Value::as_bool) == Some(true);
    let mut ot = at(os, &["template"]).clone();
    let mut nt = at(ns, &["template"]).clone();
    if suspended {
        // Scheduling directives of a suspended job may change.
        for t in [&mut ot, &mut nt] {
            if let Some(s) = t.get_mut("spec").and_then(Value::as_object_mut) {
                for k in ["nodeSelector", "affinity", "tolerations", "schedulingGates"] {
                    s.remove(k);
                }
            }
            if let Some(m) = t.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("labels");
                m.remove("annotations");
            }
        }
    }
    if ot != nt {
        errs.push(invalid(
            &path.child("template"),
            Bad::raw("core.PodTemplateSpec{...}"),
            IMMUTABLE,
        ));
    }
    if os.get("completionMode") != ns.get("completionMode") {
        errs.push(invalid(
            &path.child("completionMode"),
            str_at(ns, "completionMode").unwrap_or(""),
            IMMUTABLE,
        ));
    }
    let indexed = str_at(ns, "completionMode") == Some("Indexed");
    let (oc, nc) = (int(os, "completions"), int(ns, "completions"));
    if oc != nc && !(indexed && nc == int(ns, "parallelism")) {
        errs.push(invalid(
            &path.child("completions"),
            nc.map_or(Bad::raw("null"), Bad::from),
            IMMUTABLE,
        ));
    }
    errs
}

pub fn validate_cron_job(obj: &Value) -> Vec<Cause> {
    let spec = at(obj, &["spec"]);
    let path = Path::new("spec");
    let mut errs = Vec::new();
    let name = str_at(at(obj, &["metadata"]), "name").unwrap_or("");
    if name.len() > 52 {
        errs.push(invalid(
            &Path::new("metadata").child("name"),
            name,
            "must be no more than 52 characters",
        ));
    }
    let schedule = str_at(spec, "schedule").unwrap_or("");
    let spath = path.child("schedule");
    if schedule.is_empty() {
        errs.push(required(&spath, ""));
    } else {
        if let Err(e) = parse_schedule(schedule) {
            errs.push(invalid(&spath, schedule, &e));
        }
        if schedule.contains("TZ") {
            errs.push(invalid(
                &spath,
                schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    // The IANA names only (jiff's database: the system's, else the one built in), as the real
    // API server's LoadLocation; paths and local offsets are not zones.
    if let Some(tz) = str_at(spec, "timeZone")
        && (tz.is_empty()
            || tz.contains(' ')
            || tz.starts_with('/')
            || tz.contains("..")
            || tz == "Local"
            || jiff::tz::db().get(tz).is_err())
    {
        errs.push(invalid(
            &path.child("timeZone"),
            tz,
            &format!("unknown time zone {tz}"),
        ));
    }
    match str_at(spec, "concurrencyPolicy").unwrap_or("") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(required(&path.child("concurrencyPolicy"), "")),
        other => errs.push(not_supported(
            &path.child("concurrencyPolicy"),
            other,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    for key in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        nonneg(spec, key, &path, &mut errs);
    }
    let jt = at(spec, &["jobTemplate"]);
    let jpath = path.child("jobTemplate");
    let jmeta = at(jt, &["metadata"]);
    errs.extend(validate_labels(
        jmeta.get("labels"),
        &jpath.child("metadata").child("labels"),
    ));
    errs.extend(validate_annotations(
        jmeta.get("annotations"),
        &jpath.child("metadata").child("annotations"),
    ));
    let jspec = at(jt, &["spec"]);
    if jspec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        errs.push(not_supported(
            &jpath.child("spec").child("manualSelector"),
            true,
            &["nil", "false"],
        ));
    }
    errs.extend(validate_job_spec(jspec, &jpath.child("spec")));
    errs
}

/// Checks a schedule the way `cron.ParseStandard` does, returning its error text.
pub fn parse_schedule(schedule: &str) -> Result<(), String> {
    let mut spec = schedule.trim();
    if spec.is_empty() {
        return Err("empty spec string".to_string());
    }
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        spec = spec.split_once(' ').map_or("", |(_, rest)| rest.trim());
    }
    if let Some(desc) = spec.strip_prefix('@') {
        return match desc {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            d if d.starts_with("every ") => {
                let dur = d.trim_start_matches("every ").trim();
                if parse_go_duration(dur) {
                    Ok(())
                } else {
                    Err(format!(
                        "failed to parse duration {spec}: time: invalid duration \"{dur}\""
                    ))
                }
            }
            _ => Err(format!("unrecognized descriptor: {spec}")),
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    const MONTHS: &[&str] = &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let bounds: [(u64, u64, &[&str], u64); 5] = [
        (0, 59, &[], 0),
        (0, 23, &[], 0),
        (1, 31, &[], 0),
        (1, 12, MONTHS, 1),
        (0, 6, DAYS, 0),
    ];
    for (field, (min, max, names, offset)) in fields.iter().zip(bounds) {
        for expr in field.split(',') {
            check_range(expr, min, max, names, offset)?;
        }
    }
    Ok(())
}

fn parse_uint(expr: &str) -> Result<u64, String> {
    let n: i64 = expr.parse().map_err(|_| {
        let digits = expr.strip_prefix(['+', '-']).unwrap_or(expr);
        let why = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            "value out of range"
        } else {
            "invalid syntax"
        };
        format!("failed to parse int from {expr}: strconv.Atoi: parsing \"{expr}\": {why}")
    })?;
    u64::try_from(n).map_err(|_| format!("negative number ({n}) not allowed: {expr}"))
}

fn parse_int_or_name(expr: &str, names: &[&str], offset: u64) -> Result<u64, String> {
    let lower = expr.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        return Ok(u64::try_from(i).unwrap_or(0) + offset);
    }
    parse_uint(expr)
}

fn check_range(expr: &str, min: u64, max: u64, names: &[&str], offset: u64) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_high.len() == 1;
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        (min, max)
    } else {
        let start = parse_int_or_name(low_high[0], names, offset)?;
        match low_high.len() {
            1 => (start, start),
            2 => (start, parse_int_or_name(low_high[1], names, offset)?),
            _ => return Err(format!("too many hyphens: {expr}")),
        }
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = parse_uint(range_and_step[1])?;
            if single {
                end = max;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {expr}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {expr}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(())
}

/// Go `time.ParseDuration` syntax: `1h30m`, `90s`, `1.5h`.
fn parse_go_duration(s: &str) -> bool {
    let mut rest = s;
    if rest == "0" {
        return true;
    }
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return false;
        }
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        if !matches!(
            &rest[..unit_end],
            "ns" | "us" | "µs" | "ms" | "s" | "m" | "h"
        ) {
            return false;
        }
        rest = &rest[unit_end..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(restart: Option<&str>) -> Value {
        let mut t = json!({"metadata": {"labels": {}}, "spec": {
            "containers": [{"name": "c", "image": "busybox", "imagePullPolicy": "Always",
                "terminationMessagePolicy": "File"}],
            "dnsPolicy": "ClusterFirst"}});
        if let Some(r) = restart {
            t["spec"]["restartPolicy"] = json!(r);
        }
        t
    }

    fn msgs(errs: &[Cause]) -> Vec<String> {
        errs.iter().map(Cause::display).collect()
    }

    fn job(restart: Option<&str>) -> Value {
        let mut t = template(restart);
        t["metadata"]["labels"] =
            json!({CONTROLLER_UID: "u1", "batch.kubernetes.io/job-name": "pi"});
        json!({"metadata": {"name": "pi", "uid": "u1"}, "spec": {
            "selector": {"matchLabels": {CONTROLLER_UID: "u1"}},
            "template": t, "parallelism": 1, "completions": 1, "backoffLimit": 6}})
    }

    #[test]
    fn job_restart_policy() {
        assert!(validate_job(&job(Some("Never"))).is_empty());
        let want = "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"";
        assert_eq!(msgs(&validate_job(&job(None))), vec![want]);
        assert_eq!(msgs(&validate_job(&job(Some("Always")))), vec![want]);
    }

    #[test]
    fn job_counts_and_selector() {
        let mut j = job(Some("OnFailure"));
        j["spec"]["parallelism"] = json!(-1);
        j["spec"]["backoffLimit"] = json!(-2);
        assert_eq!(
            msgs(&validate_job(&j)),
            vec![
                "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
                "spec.backoffLimit: Invalid value: -2: must be greater than or equal to 0",
            ]
        );
        let mut j = job(Some("OnFailure"));
        j["spec"]["selector"] = json!({"matchLabels": {CONTROLLER_UID: "u1", "app": "x"}});
        let m = msgs(&validate_job(&j));
        assert!(
            m.iter()
                .any(|e| e.ends_with("`selector` not auto-generated")),
            "{m:?}"
        );
        let mut j = job(Some("OnFailure"));
        j["spec"].as_object_mut().unwrap().remove("selector");
        assert_eq!(msgs(&validate_job(&j))[0], "spec.selector: Required value");
    }

    #[test]
    fn job_update_immutables() {
        let old = job(Some("Never"));
        let mut new = old.clone();
        new["spec"]["backoffLimit"] = json!(3);
        assert!(validate_job_update(&old, &new).is_empty());
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("other");
        new["spec"]["completions"] = json!(4);
        assert_eq!(
            msgs(&validate_job_update(&old, &new)),
            vec![
                "spec.template: Invalid value: core.PodTemplateSpec{...}: field is immutable",
                "spec.completions: Invalid value: 4: field is immutable",
            ]
        );
    }

    #[test]
    fn cron_job_rules() {
        let mut cj = json!({"metadata": {"name": "hello"}, "spec": {
            "schedule": "*/5 * * * *", "concurrencyPolicy": "Allow",
            "jobTemplate": {"spec": {"template": template(Some("OnFailure"))}}}});
        assert!(
            validate_cron_job(&cj).is_empty(),
            "{:?}",
            validate_cron_job(&cj)
        );
        cj["spec"]["schedule"] = json!("61 * * * *");
        cj["spec"]["concurrencyPolicy"] = json!("Sometimes");
        cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        assert_eq!(
            msgs(&validate_cron_job(&cj)),
            vec![
                "spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61",
                "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
                "spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
            ]
        );
        cj["spec"]["schedule"] = json!("");
        assert!(
            msgs(&validate_cron_job(&cj)).contains(&"spec.schedule: Required value".to_string())
        );
    }

    #[test]
    fn cron_job_time_zones() {
        let mut cj = json!({"metadata": {"name": "hello"}, "spec": {
            "schedule": "0 9 * * *", "concurrencyPolicy": "Allow", "timeZone": "Asia/Kolkata",
            "jobTemplate": {"spec": {"template": template(Some("OnFailure"))}}}});
        assert!(validate_cron_job(&cj).is_empty());
        for bad in [
            "Mars/Olympus",
            "Local",
            "../etc/passwd",
            "/etc/localtime",
            "",
        ] {
            cj["spec"]["timeZone"] = json!(bad);
            assert_eq!(
                msgs(&validate_cron_job(&cj)),
                vec![format!(
                    "spec.timeZone: Invalid value: \"{bad}\": unknown time zone {bad}"
                )],
            );
        }
    }

    #[test]
    fn cron_grammar() {
        for ok in [
            "* * * * *",
            "0 0 1 jan mon",
            "0-30/10 1,2,3 ? * SUN-SAT",
            "@hourly",
            "@every 1h30m",
            "5/15 * * * *",
            "TZ=UTC 0 * * * *",
        ] {
            assert_eq!(parse_schedule(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            parse_schedule("* * *").unwrap_err(),
            "expected exactly 5 fields, found 3: [* * *]"
        );
        assert_eq!(
            parse_schedule("@often").unwrap_err(),
            "unrecognized descriptor: @often"
        );
        assert_eq!(
            parse_schedule("x * * * *").unwrap_err(),
            "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            parse_schedule("5-2 * * * *").unwrap_err(),
            "beginning of range (5) beyond end of range (2): 5-2"
        );
        assert_eq!(
            parse_schedule("* * 0 * *").unwrap_err(),
            "beginning of range (0) below minimum (1): 0"
        );
        assert_eq!(
            parse_schedule("*/0 * * * *").unwrap_err(),
            "step of range should be a positive number: */0"
        );
    }
}

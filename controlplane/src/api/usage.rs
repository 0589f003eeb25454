//! `GET /api/v1/orgs/{org}/usage`: exact token counts and cost, summed and grouped, from the
//! records gateways report (streams included; never estimates), with what the response cache
//! saved beside them: hits, the tokens their stored responses used and what those would have
//! cost again. A hit is not a usage record (it spent nothing), so `requests` counts only the
//! requests that reached a provider.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::orgs::authorized_org;
use super::ApiQuery;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::guards::slug::PathSlugs;
use crate::rbac::Need;
use crate::state::AppState;
use crate::store::{SavingsRow, UsageFilter, UsageGrouping, UsageRow};

/// Filters and grouping of a usage query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// From this time, Unix milliseconds (inclusive; default: the beginning).
    pub from: Option<i64>,
    /// Until this time, Unix milliseconds (exclusive; default: now and later).
    pub to: Option<i64>,
    /// Only this project (slug).
    pub project: Option<String>,
    /// Only this model (as the provider named it), exactly.
    pub model: Option<String>,
    /// Comma-separated: any of `project`, `model`, `day` (UTC). None: one total.
    pub group_by: Option<String>,
}

/// One group's totals.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageGroup {
    /// The project, when grouped by project.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The model, when grouped by model (`""`: the provider named none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The UTC day (`YYYY-MM-DD`), when grouped by day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    /// Requests.
    pub requests: i64,
    /// Uncached input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Input tokens read from a prompt cache.
    pub cache_read_tokens: i64,
    /// Input tokens written to a prompt cache.
    pub cache_write_tokens: i64,
    /// Exact cost in pico-units (10⁻¹²) of the price table's currency.
    pub cost_pico: i64,
    /// The same cost in micro-units, rounded down.
    pub cost_micros: i64,
    /// Requests whose model had no price (not in the cost).
    pub unpriced_requests: i64,
    /// Requests whose response did not reach its end (counted for what was received).
    pub incomplete_requests: i64,
    /// Requests answered from the response cache (not in `requests`).
    pub cache_hits: i64,
    /// Uncached input tokens the cache hits did not spend again.
    pub saved_input_tokens: i64,
    /// Output tokens saved.
    pub saved_output_tokens: i64,
    /// Prompt-cache read tokens saved.
    pub saved_cache_read_tokens: i64,
    /// Prompt-cache write tokens saved.
    pub saved_cache_write_tokens: i64,
    /// Cost saved by cache hits, pico-units (hits of unpriced models add nothing).
    pub saved_cost_pico: i64,
    /// The same in micro-units, rounded down.
    pub saved_cost_micros: i64,
}

/// The answer of a usage query.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    /// One entry per group (one in all without `group_by`).
    pub items: Vec<UsageGroup>,
}

fn grouping(s: Option<&str>) -> Result<UsageGrouping, ApiError> {
    let mut g = UsageGrouping::default();
    for part in s
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        match part {
            "project" => g.project = true,
            "model" => g.model = true,
            "day" => g.day = true,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_group_by",
                    "group_by takes project, model and day, comma-separated",
                ))
            }
        }
    }
    Ok(g)
}

/// `YYYY-MM-DD` of a day number since the epoch.
fn day_label(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Usage of an org: exact tokens and cost, filtered and grouped.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/usage", tag = "usage",
    params(("org" = String, Path, description = "org slug"), UsageQuery),
    responses((status = 200, body = UsageReport), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_usage(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<UsageReport>, ApiError> {
    let org = authorized_org(&st, &caller, &p, Need::ConfigRead).await?;
    let g = grouping(q.group_by.as_deref())?;
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from > to {
            return Err(ApiError::bad_request(
                "invalid_range",
                "from must not be after to",
            ));
        }
    }
    let f = UsageFilter {
        from_ms: q.from,
        to_ms: q.to,
        project: q.project,
        model: q.model,
    };
    let rows = st.store.query_usage(&org.slug, &f, g).await?;
    let saved = st.store.query_savings(&org.slug, &f, g).await?;
    Ok(Json(UsageReport {
        items: merge(rows, saved, g),
    }))
}

/// Joins spent and saved by group; a group with only hits (or only usage) has zeros for the
/// other half. Ordered by project, model, day, like the queries.
fn merge(rows: Vec<UsageRow>, saved: Vec<SavingsRow>, g: UsageGrouping) -> Vec<UsageGroup> {
    let mut groups: std::collections::BTreeMap<(String, String, i64), UsageGroup> =
        Default::default();
    let empty = |project: &str, model: &str, day: i64| UsageGroup {
        project: g.project.then(|| project.to_owned()),
        model: g.model.then(|| model.to_owned()),
        day: g.day.then(|| day_label(day)),
        requests: 0,
        input_tokens: 0,
        output_tokens: 0,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        cost_pico: 0,
        cost_micros: 0,
        unpriced_requests: 0,
        incomplete_requests: 0,
        cache_hits: 0,
        saved_input_tokens: 0,
        saved_output_tokens: 0,
        saved_cache_read_tokens: 0,
        saved_cache_write_tokens: 0,
        saved_cost_pico: 0,
        saved_cost_micros: 0,
    };
    for r in rows {
        let e = groups
            .entry((r.project.clone(), r.model.clone(), r.day))
            .or_insert_with(|| empty(&r.project, &r.model, r.day));
        e.requests = r.requests;
        e.input_tokens = r.input_tokens;
        e.output_tokens = r.output_tokens;
        e.cache_read_tokens = r.cache_read_tokens;
        e.cache_write_tokens = r.cache_write_tokens;
        e.cost_pico = r.cost_pico;
        e.cost_micros = r.cost_pico / 1_000_000;
        e.unpriced_requests = r.unpriced_requests;
        e.incomplete_requests = r.incomplete_requests;
    }
    for s in saved {
        let e = groups
            .entry((s.project.clone(), s.model.clone(), s.day))
            .or_insert_with(|| empty(&s.project, &s.model, s.day));
        e.cache_hits = s.hits;
        e.saved_input_tokens = s.input_tokens;
        e.saved_output_tokens = s.output_tokens;
        e.saved_cache_read_tokens = s.cache_read_tokens;
        e.saved_cache_write_tokens = s.cache_write_tokens;
        e.saved_cost_pico = s.cost_saved_pico;
        e.saved_cost_micros = s.cost_saved_pico / 1_000_000;
    }
    groups.into_values().collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn day_labels() {
        assert_eq!(super::day_label(0), "1970-01-01");
        assert_eq!(super::day_label(20_786), "2026-11-29");
        assert_eq!(super::day_label(11_016), "2000-02-29");
    }
}

//! A [`JobFilter`] as Postgres conditions. Only the conditions a filter sets are
//! written (so the planner sees `state = ANY($1) AND id > $2`, which the `(state, id)`
//! index answers, rather than a generic `($1 IS NULL OR ...)`), every value is a bound
//! parameter, and the SQL text is made of the fixed fragments below alone.

use sqlx::{Postgres, QueryBuilder};

use crate::store::filter::{JobFilter, Order};

/// Appends SQL text; only ever fixed fragments, never a value.
fn sql(b: &mut QueryBuilder<Postgres>, fragment: &'static str) {
    b.push(fragment);
}

/// Appends ` AND ...` for each condition `filter` sets, with `states` in place of the
/// filter's own (a bulk action narrows them; an empty list does not restrict).
pub(super) fn push_conditions(b: &mut QueryBuilder<Postgres>, filter: &JobFilter, states: &[&str]) {
    if !filter.queues.is_empty() {
        sql(b, " AND queue = ANY(");
        b.push_bind(filter.queues.clone());
        sql(b, ")");
    }
    if !states.is_empty() {
        sql(b, " AND state = ANY(");
        b.push_bind(states.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        sql(b, ")");
    }
    if let Some(kind) = &filter.kind {
        sql(b, " AND kind = ");
        b.push_bind(kind.clone());
    }
    if let Some(p) = filter.priority_min {
        sql(b, " AND priority >= ");
        b.push_bind(p);
    }
    if let Some(p) = filter.priority_max {
        sql(b, " AND priority <= ");
        b.push_bind(p);
    }
    if let Some(t) = filter.created.from {
        sql(b, " AND created_at >= ");
        b.push_bind(t.0);
    }
    if let Some(t) = filter.created.to {
        sql(b, " AND created_at < ");
        b.push_bind(t.0);
    }
    if let Some(t) = filter.finished.from {
        sql(b, " AND finished_at >= ");
        b.push_bind(t.0);
    }
    if let Some(t) = filter.finished.to {
        sql(b, " AND finished_at < ");
        b.push_bind(t.0);
    }
    if let Some(m) = &filter.payload {
        // Containment rather than `payload #> path = value`: for a scalar under a
        // path of object keys the two agree, and `@>` can use a GIN index on payload
        // where an operator created one (see the migration).
        sql(b, " AND payload @> ");
        b.push_bind(m.containment());
        sql(b, "::jsonb");
    }
}

/// Appends the keyset condition past `filter.after`, the order and the limit.
pub(super) fn push_page(b: &mut QueryBuilder<Postgres>, filter: &JobFilter) {
    match (filter.order, filter.after) {
        (Order::Asc, Some(after)) => {
            sql(b, " AND id > ");
            b.push_bind(after.0);
        }
        (Order::Desc, Some(after)) => {
            sql(b, " AND id < ");
            b.push_bind(after.0);
        }
        (_, None) => {}
    }
    match filter.order {
        Order::Asc => sql(b, " ORDER BY id LIMIT "),
        Order::Desc => sql(b, " ORDER BY id DESC LIMIT "),
    }
    b.push_bind(i64::from(filter.limit));
}

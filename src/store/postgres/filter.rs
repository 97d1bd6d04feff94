//! A [`JobFilter`] as Postgres conditions: the lists and the payload match here, the
//! rest shared with SQLite (`store/filter_sql.rs`). Only the conditions a filter sets are
//! written (so the planner sees `state = $1 AND id > $2`, which the `(state, id)`
//! index answers in order, rather than a generic `($1 IS NULL OR ...)`), every value is a bound
//! parameter, and the SQL text is made of the fixed fragments below alone.

use sqlx::{Postgres, QueryBuilder};

use crate::store::filter::JobFilter;
use crate::store::filter_sql::push_scalars;
pub(super) use crate::store::filter_sql::{order_by, push_keyset, push_page};

/// Appends SQL text; only ever fixed fragments, never a value.
fn sql(b: &mut QueryBuilder<Postgres>, fragment: &'static str) {
    b.push(fragment);
}

/// Appends `<column> = $n` for one value, `<column> = ANY($n)` for several, nothing for
/// none. One value is written as `=` because Postgres before 17 reads an index in order
/// only for `=`: `queue = ANY('{q2}')` makes a page of one queue sort its rows (or walk
/// the primary key and filter) where `queue = 'q2'` reads `(queue, id)` in order.
fn push_any(b: &mut QueryBuilder<Postgres>, column: &'static str, values: &[String]) {
    match values {
        [] => {}
        [one] => {
            sql(b, column);
            sql(b, " = ");
            b.push_bind(one.clone());
        }
        many => {
            sql(b, column);
            sql(b, " = ANY(");
            b.push_bind(many.to_vec());
            sql(b, ")");
        }
    }
}

/// Appends ` AND ...` for each condition `filter` sets, with `states` in place of the
/// filter's own (a bulk action narrows them; an empty list does not restrict).
pub(super) fn push_conditions(b: &mut QueryBuilder<Postgres>, filter: &JobFilter, states: &[&str]) {
    push_any(b, " AND queue", &filter.queues);
    let states: Vec<String> = states.iter().map(|s| s.to_string()).collect();
    push_any(b, " AND state", &states);
    push_scalars(b, filter);
    if let Some(m) = &filter.payload {
        // Containment rather than `payload #> path = value`: for a scalar under a
        // path of object keys the two agree (typed: "42" is not 42, 1 is 1.0), and
        // `@>` can use the GIN index `jobs_payload` where operators created it (see
        // migration 0014; when a page uses it is decided in `listing.rs`).
        sql(b, " AND payload @> ");
        b.push_bind(m.containment());
        sql(b, "::jsonb");
    }
}

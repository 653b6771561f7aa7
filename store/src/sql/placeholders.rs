//! Numbered placeholders for statements that take many rows at once. Only `$N` are generated
//! here, never a value: every value is bound. (sqlx's query builder writes `?` for the `Any`
//! driver, which PostgreSQL does not take.)

/// `($1, $2, …), ($k, …), …`: `rows` tuples of `columns` placeholders, numbered from `first`.
pub(super) fn tuples(rows: usize, columns: usize, first: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        out.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            out.push('$');
            out.push_str(&(first + row * columns + column).to_string());
        }
        out.push(')');
    }
    out
}

/// `$first, $first+1, …`: a list of `n` placeholders, for `IN (…)`.
pub(super) fn list(n: usize, first: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How many rows a many-row statement takes at most: well under SQLite's 32,766 and
/// PostgreSQL's 65,535 parameters a statement for the widest row (14 columns).
pub(super) const ROWS_PER_STATEMENT: usize = 500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(tuples(2, 3, 1), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(tuples(1, 2, 5), "($5, $6)");
        assert_eq!(list(3, 2), "$2, $3, $4");
    }
}

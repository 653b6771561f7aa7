//! Placeholders for statements that take many rows at once. Only placeholders are generated
//! here, never a value: every value is bound. They are a statement's only parameters, in the
//! order they are bound.

use sqlx::AnyConnection;

/// How a backend takes a statement's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Numbering {
    /// `?`, each the next value bound: SQLite. sqlx's SQLite driver asks SQLite the name of
    /// every parameter of a statement it binds, and SQLite finds a parameter's name by walking
    /// the statement's list of names: with `$N`, binding a statement of n parameters costs n²
    /// (44 % of the controller's time in a 10,000-device offboarding, whose statements carry
    /// up to 7,000). A `?` has no name to look for.
    Anonymous,
    /// `$1, $2, …`: PostgreSQL, which does not take `?`.
    Dollar,
}

impl Numbering {
    /// The numbering `conn`'s backend takes.
    pub(super) fn of(conn: &AnyConnection) -> Self {
        if conn.backend_name() == <sqlx::Sqlite as sqlx::Database>::NAME {
            Self::Anonymous
        } else {
            Self::Dollar
        }
    }

    fn push(self, out: &mut String, n: usize) {
        match self {
            Self::Anonymous => out.push('?'),
            Self::Dollar => {
                out.push('$');
                out.push_str(&n.to_string());
            }
        }
    }
}

/// `(?, ?, …), (?, …), …` or `($1, $2, …), ($k, …), …`: `rows` tuples of `columns`
/// placeholders.
pub(super) fn tuples(numbering: Numbering, rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        out.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            numbering.push(&mut out, 1 + row * columns + column);
        }
        out.push(')');
    }
    out
}

/// `?, ?, …` or `$1, $2, …`: a list of `n` placeholders, for `IN (…)`.
pub(super) fn list(numbering: Numbering, n: usize) -> String {
    list_from(numbering, 1, n)
}

/// [`list`] after a statement's first `first - 1` parameters: `?, ?, …` or
/// `$first, $first+1, …`.
pub(super) fn list_from(numbering: Numbering, first: usize, n: usize) -> String {
    let mut out = String::with_capacity(n * 5);
    for i in first..first + n {
        if i > first {
            out.push_str(", ");
        }
        numbering.push(&mut out, i);
    }
    out
}

/// How many rows a many-row statement takes at most: well under SQLite's 32,766 and
/// PostgreSQL's 65,535 parameters a statement for the widest row (18 columns).
pub(super) const ROWS_PER_STATEMENT: usize = 500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order_or_anonymous() {
        assert_eq!(
            tuples(Numbering::Dollar, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(tuples(Numbering::Anonymous, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(list(Numbering::Dollar, 3), "$1, $2, $3");
        assert_eq!(list(Numbering::Anonymous, 2), "?, ?");
    }

    #[tokio::test]
    async fn sqlite_takes_anonymous_placeholders_and_binds_them_in_order() {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect("sqlite::memory:").await.unwrap();
        let numbering = Numbering::of(&conn);
        assert_eq!(numbering, Numbering::Anonymous);
        let statement = ["SELECT * FROM (VALUES ", &tuples(numbering, 3, 2), ")"].concat();
        let mut query = sqlx::query_as::<_, (i64, String)>(&statement);
        for i in 0..3 {
            query = query.bind(i).bind(format!("row {i}"));
        }
        let rows = query.fetch_all(&mut conn).await.unwrap();
        assert_eq!(
            rows,
            vec![
                (0, "row 0".to_owned()),
                (1, "row 1".to_owned()),
                (2, "row 2".to_owned())
            ]
        );
    }
}

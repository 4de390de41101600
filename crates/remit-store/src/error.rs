//! Turning sqlx errors into core's `StoreError`, once, with what remit was doing.

use remit_core::ports::{StoreError, StoreErrorKind};

/// Maps a sqlx error to a store error whose message says what was being done.
pub(crate) fn store_error(doing: &str, error: &sqlx::Error) -> StoreError {
    StoreError::new(kind(error), format!("{doing}: {error}"))
}

/// The kind of a sqlx error, after sqlx's own classification and the SQLSTATE.
fn kind(error: &sqlx::Error) -> StoreErrorKind {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => StoreErrorKind::Unavailable,
        sqlx::Error::RowNotFound
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::Migrate(_) => StoreErrorKind::Corrupt,
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return StoreErrorKind::Conflict;
            }
            let code = db.code().unwrap_or_default();
            if unavailable_code(&code) {
                StoreErrorKind::Unavailable
            } else {
                StoreErrorKind::Other
            }
        }
        _ => StoreErrorKind::Other,
    }
}

/// SQLSTATEs (PostgreSQL) and result codes (SQLite) that mean "down, gone or busy".
fn unavailable_code(code: &str) -> bool {
    // PostgreSQL: 08 connection exception, 53 insufficient resources, 57P admin
    // shutdown / crash / cannot connect now, 3D000 database does not exist,
    // 40P01 deadlock (retry later), 55P03 lock not available.
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || code == "3D000"
        || code == "40P01"
        || code == "55P03"
        // SQLite primary codes: 5 busy, 6 locked, 10 I/O error, 13 full, 14 cannot open
        // (extended codes keep the primary code in their low byte).
        || code
            .parse::<i64>()
            .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13 | 14))
}

/// The same error again, for answering every caller of a failed batch.
pub(crate) fn repeat(error: &StoreError) -> StoreError {
    StoreError::new(error.kind, error.message.clone())
}

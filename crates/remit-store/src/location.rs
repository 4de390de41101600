//! Where a store lives, parsed from its URL, with the password kept out of every message.

use remit_core::ports::{StoreError, StoreErrorKind};
use sqlx::postgres::PgConnectOptions;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where a store lives: a SQLite file or a PostgreSQL database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A SQLite database file, absolute.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(PostgresUrl),
}

impl Location {
    /// Parses a store URL; a relative SQLite path is taken from `base_dir`.
    pub fn parse(url: &str, base_dir: &Path) -> Result<Self, StoreError> {
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if rest.is_empty() || rest.starts_with(':') {
                return Err(bad_url(
                    "a sqlite url needs a file path (`sqlite://remit.db`)",
                ));
            }
            if rest.contains('?') {
                return Err(bad_url("sqlite url options (`?...`) are not supported"));
            }
            let path = Path::new(rest);
            let path = if path.is_absolute() {
                path.to_path_buf()
            } else {
                base_dir.join(path)
            };
            return Ok(Self::Sqlite(path));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return PostgresUrl::parse(url).map(Self::Postgres);
        }
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        Err(bad_url(format!(
            "unsupported store url scheme `{scheme}`: expected `sqlite://PATH` or `postgres://USER@HOST/DATABASE`"
        )))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite `{}`", path.display()),
            Self::Postgres(url) => write!(f, "postgres `{}`", url.redacted()),
        }
    }
}

/// A PostgreSQL URL that shows itself without its password.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    url: String,
    redacted: String,
}

impl PostgresUrl {
    /// Checks the URL and prepares its password-free form.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| bad_url(format!("invalid postgres url: {}", redact_error(&e, url))))?;
        Ok(Self {
            url: url.to_owned(),
            redacted: redacted(&options),
        })
    }

    /// The full URL, password included; only for connecting.
    pub fn expose_secret(&self) -> &str {
        &self.url
    }

    /// The URL without password: user, host, port and database.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PostgresUrl").field(&self.redacted).finish()
    }
}

/// `postgres://user@host:port/database`, from parsed options.
pub(crate) fn redacted(options: &PgConnectOptions) -> String {
    let host = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => options.get_host().to_owned(),
    };
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        host,
        options.get_port(),
        options.get_database().unwrap_or_default()
    )
}

/// An error's text with the URL (and so any password in it) cut out.
fn redact_error(error: &sqlx::Error, url: &str) -> String {
    error.to_string().replace(url, "<url>")
}

fn bad_url(message: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Other, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_sqlite_path_is_taken_from_base_dir() {
        let base = Path::new("/srv/remit");
        assert_eq!(
            Location::parse("sqlite://state/remit.db", base).unwrap(),
            Location::Sqlite(PathBuf::from("/srv/remit/state/remit.db"))
        );
        assert_eq!(
            Location::parse("sqlite:remit.db", base).unwrap(),
            Location::Sqlite(PathBuf::from("/srv/remit/remit.db"))
        );
        assert_eq!(
            Location::parse("sqlite:///var/lib/remit.db", base).unwrap(),
            Location::Sqlite(PathBuf::from("/var/lib/remit.db"))
        );
    }

    #[test]
    fn memory_sqlite_is_refused() {
        assert!(Location::parse("sqlite::memory:", Path::new("/")).is_err());
    }

    #[test]
    fn postgres_url_is_shown_without_password() {
        let location = Location::parse(
            "postgres://remit:hunter2@db.internal:5433/fleet",
            Path::new("/"),
        )
        .unwrap();
        let shown = format!("{location} {location:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://remit@db.internal:5433/fleet"),
            "{shown}"
        );
    }

    #[test]
    fn unknown_scheme_is_named_without_the_rest_of_the_url() {
        let err = Location::parse("mysql://u:hunter2@h/db", Path::new("/")).unwrap_err();
        assert!(err.message.contains("`mysql`"), "{}", err.message);
        assert!(!err.message.contains("hunter2"));
    }
}

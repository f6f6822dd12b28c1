//! Settings: the only user of the `config` crate.
//!
//! Layers, lowest first: built-in defaults < the TOML file (`--config PATH`, else
//! `TALLY_CONFIG`, else `./tally.toml` when it exists) < environment variables
//! `TALLY_<SECTION>__<KEY>` (e.g. `TALLY_RECONCILE__BATCH_SIZE=200`) < the short
//! `TALLY_DATABASE_URL`. Secrets (the database password) never appear in `Debug` or
//! `Display`. New sections (the scheduler, bookkeepers) add a field to [`Settings`]
//! with `#[serde(default)]` and a `Default`.

use crate::bookkeepers::{HttpBookkeeperSettings, RetryPolicy, SecretString};
use crate::domain::classify::{ClassifierError, NumberClassifiers, DEFAULT_CLASSIFIERS};
use crate::domain::merge::StrategyPriorities;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The database used when nothing is configured: a file next to the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./tally.db";

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub reconcile: ReconcileSettings,
    pub services: ServicesSettings,
    pub sync: SyncSettings,
    pub bookkeeper_sync: BookkeeperSyncSettings,
    pub bookkeepers: BookkeeperSettings,
    pub scheduler: SchedulerSettings,
    pub topup: TopupSettings,
    pub ingest: IngestSettings,
    pub api: ApiSettings,
    pub retention: RetentionSettings,
}

/// `[retention]`: how many days `tally run prune` keeps finished records; 0 (the
/// default) keeps them forever. Audit logs are kept unless `audit_logs_days` is set.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// Finished runs (`tally runs`); the newest run of each job is always kept.
    pub runs_days: u32,
    /// Deliveries their bookkeeper acknowledged; waiting and failed ones are kept.
    pub deliveries_days: u32,
    /// Quantity-change records and their entries (day summaries are kept).
    pub change_records_days: u32,
    /// Answered audit logs; pending ones, and those a waiting delivery carries, are kept.
    pub audit_logs_days: u32,
    /// Rows deleted per transaction, so that other writers wait at most one batch.
    pub batch_size: usize,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            runs_days: 0,
            deliveries_days: 0,
            change_records_days: 0,
            audit_logs_days: 0,
            batch_size: 1_000,
        }
    }
}

impl RetentionSettings {
    /// The policy the domain computes cutoffs from.
    pub fn retention(&self) -> crate::domain::retention::Retention {
        crate::domain::retention::Retention {
            runs_days: self.runs_days,
            deliveries_days: self.deliveries_days,
            change_records_days: self.change_records_days,
            audit_logs_days: self.audit_logs_days,
        }
    }
}

/// `tally serve`: Kazoo's logins (`PUT /v2/api_auth`, `PUT /v2/user_auth`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// How long a login's token lives (Kazoo's default: 3600).
    pub login_token_seconds: u64,
    /// Failed logins one source address may make within `login_failure_window_seconds`;
    /// then 429 with Retry-After until the window ends.
    pub login_failures_allowed: u32,
    pub login_failure_window_seconds: u64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            login_token_seconds: 3600,
            login_failures_allowed: 10,
            login_failure_window_seconds: 300,
        }
    }
}

/// Automatic top-ups (`sync-and-bookkeepers.md` §10, Kazoo's `topup.enable`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopupSettings {
    /// The `topup` job tops up low balances only when true; manual top-ups always work.
    pub enable: bool,
}

/// Ingestion of the platform's documents (`tally inventory`, the `ingest` job).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSettings {
    /// Documents written per transaction.
    pub batch_size: usize,
    /// Phone-number classifiers, in order: the first whose regex matches a number's
    /// E.164 id names its `phone_numbers` item (Kazoo's number_manager defaults).
    /// Changing the list reclassifies stored numbers on the next run.
    pub number_classifiers: Vec<ClassifierSetting>,
    /// The CouchDB server `tally inventory follow` and the `ingest` job read.
    pub couchdb: CouchDbSettings,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            batch_size: 5000,
            number_classifiers: DEFAULT_CLASSIFIERS
                .iter()
                .map(|(name, regex)| ClassifierSetting {
                    name: (*name).to_owned(),
                    regex: (*regex).to_owned(),
                })
                .collect(),
            couchdb: CouchDbSettings::default(),
        }
    }
}

impl IngestSettings {
    /// The classifier list, compiled.
    pub fn classifiers(&self) -> Result<NumberClassifiers, ClassifierError> {
        let pairs: Vec<(&str, &str)> = self
            .number_classifiers
            .iter()
            .map(|classifier| (classifier.name.as_str(), classifier.regex.as_str()))
            .collect();
        NumberClassifiers::new(&pairs)
    }
}

/// One phone-number classifier.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierSetting {
    pub name: String,
    pub regex: String,
}

/// Where the platform's CouchDB is, and how to log in.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CouchDbSettings {
    /// e.g. `http://127.0.0.1:5984`; empty = not configured. Credentials written in
    /// the URL are secrets too and never printed.
    pub url: DatabaseUrl,
    pub username: String,
    /// A secret, never printed.
    pub password: SecretString,
    /// Seconds between two reads of the feeds when following.
    pub poll_seconds: u64,
    /// Seconds to wait for an answer before the server counts as unreachable.
    pub timeout_seconds: u64,
    /// Documents read per `_changes` page.
    pub page_size: usize,
}

impl Default for CouchDbSettings {
    fn default() -> Self {
        CouchDbSettings {
            url: DatabaseUrl::new(""),
            username: String::new(),
            password: SecretString::default(),
            poll_seconds: 2,
            timeout_seconds: 10,
            page_size: 1000,
        }
    }
}

/// The daemon (`tally schedule`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSettings {
    /// The directory of job files (`--jobs-dir` wins).
    pub jobs_dir: PathBuf,
    /// Seconds a claimed run stays ours without renewal; another instance takes it
    /// over after that.
    pub lease_seconds: u64,
    /// Seconds between lease renewals of a running job.
    pub heartbeat_seconds: u64,
    /// Seconds a running job may take to commit its batch after SIGTERM.
    pub shutdown_grace_seconds: u64,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            jobs_dir: PathBuf::from("jobs"),
            lease_seconds: 60,
            heartbeat_seconds: 20,
            shutdown_grace_seconds: 30,
        }
    }
}

/// Kazoo's `system_config/services` keys that shape billing (spec README).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServicesSettings {
    /// Bookkeeper type of accounts billed by the master account that name none
    /// (legacy names such as `kz_bookkeeper_local` are understood, quirk Q-SYN-5).
    pub master_account_bookkeeper: String,
    /// List the master account's audit rows (they are always written, to drive delivery).
    pub should_save_master_audit_logs: bool,
    /// How strategy groups rank when merging (`plans.md` §7.5).
    pub merge_strategy_priority: MergeStrategyPriority,
}

impl Default for ServicesSettings {
    fn default() -> Self {
        ServicesSettings {
            master_account_bookkeeper: "default".to_owned(),
            should_save_master_audit_logs: false,
            merge_strategy_priority: MergeStrategyPriority::default(),
        }
    }
}

/// `merge_strategy_priority`: Kazoo's code defaults (not the schema's, quirk Q-PLN-4).
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MergeStrategyPriority {
    pub simple: i64,
    pub recursive: i64,
    pub cumulative: i64,
}

impl Default for MergeStrategyPriority {
    fn default() -> Self {
        let defaults = StrategyPriorities::default();
        MergeStrategyPriority {
            simple: defaults.simple,
            recursive: defaults.recursive,
            cumulative: defaults.cumulative,
        }
    }
}

impl MergeStrategyPriority {
    pub fn priorities(self) -> StrategyPriorities {
        StrategyPriorities {
            simple: self.simple,
            recursive: self.recursive,
            cumulative: self.cumulative,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncSettings {
    /// Accounts repriced per transaction.
    pub batch_size: usize,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings { batch_size: 500 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BookkeeperSyncSettings {
    /// Deliveries taken per round.
    pub batch_size: usize,
    /// Deliveries in flight at once.
    pub parallelism: usize,
    /// Seconds a worker owns the deliveries it took.
    pub lease_seconds: u64,
    /// First retry delay; doubles after each failure up to `retry_max_seconds`.
    pub retry_initial_seconds: u64,
    pub retry_max_seconds: u64,
    /// Failed attempts after which a delivery is reported and waits for an operator.
    pub max_attempts: u32,
}

impl Default for BookkeeperSyncSettings {
    fn default() -> Self {
        BookkeeperSyncSettings {
            batch_size: 200,
            parallelism: 8,
            lease_seconds: 300,
            retry_initial_seconds: 600,
            retry_max_seconds: 6 * 3600,
            max_attempts: 10,
        }
    }
}

impl BookkeeperSyncSettings {
    pub fn retry_policy(&self) -> Result<RetryPolicy, ConfigError> {
        RetryPolicy::new(
            Duration::from_secs(self.retry_initial_seconds),
            Duration::from_secs(self.retry_max_seconds),
            self.max_attempts,
        )
        .map_err(|error| ConfigError::Setting(format!("bookkeeper_sync: {error}")))
    }
}

/// Bookkeeper adapters' settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BookkeeperSettings {
    /// The HTTP bookkeeper (`sync-and-bookkeepers.md` §7).
    pub http: HttpBookkeeperSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://PATH` (the default; created by `tally migrate` or `tally demo`, never
    /// by the other commands) or `postgres://…`.
    pub url: DatabaseUrl,
    /// Connections in the pool: the API's concurrency on the database.
    pub pool_size: u32,
    /// Seconds to reach the database, at start and for a new pooled connection; a
    /// database unreachable that long at start ends the command with exit 75.
    pub connect_timeout_seconds: u64,
    /// Seconds a run keeps retrying a stage after a database fault (a lost
    /// connection, a restarting server, a busy SQLite file) before it exits 75.
    pub retry_seconds: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: DatabaseUrl(DEFAULT_DATABASE_URL.to_string()),
            pool_size: 4,
            connect_timeout_seconds: 10,
            retry_seconds: 60,
        }
    }
}

impl DatabaseSettings {
    /// How the store opens its pool: a SQLite file that does not exist is refused, so
    /// a command run in the wrong directory fails instead of billing an empty database.
    pub fn connect_options(&self) -> crate::store::ConnectOptions {
        crate::store::ConnectOptions {
            pool_size: self.pool_size,
            connect_timeout: Duration::from_secs(self.connect_timeout_seconds),
            missing: crate::store::MissingDatabase::Refuse,
        }
    }

    /// The options of the commands that create the database (`tally migrate`,
    /// `tally demo`, `tally run billing --demo`).
    pub fn creating_options(&self) -> crate::store::ConnectOptions {
        crate::store::ConnectOptions {
            missing: crate::store::MissingDatabase::Create,
            ..self.connect_options()
        }
    }

    /// How long a run retries database faults.
    pub fn fault_budget(&self) -> Duration {
        Duration::from_secs(self.retry_seconds)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcileSettings {
    /// A directory of counting queries replacing the built-in `sql/counting/` ones.
    pub counting_dir: Option<PathBuf>,
    /// Changed accounts written per transaction; each account's rows stay together.
    pub batch_size: usize,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        ReconcileSettings {
            counting_dir: None,
            batch_size: 500,
        }
    }
}

/// What a secret prints as (`tally config`, logs, error messages).
pub const REDACTED: &str = "<redacted>";

/// `url` with the password of its credentials (`scheme://user:password@host`)
/// replaced by [`REDACTED`]; a URL without a password is returned as it is. The
/// credentials end at the last `@` before the path, so a password may contain `@`.
pub fn redact_url_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((credentials, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:{REDACTED}@{host}{path}"),
        None => url.to_owned(),
    }
}

/// Serializes a URL setting held as plain text with its password redacted.
pub(crate) fn serialize_redacted_url<S: serde::Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&redact_url_credentials(url))
}

/// A database URL whose password is masked when printed.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

/// Printed as [`DatabaseUrl::redacted`]: `tally config` never shows the password.
impl Serialize for DatabaseUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl(url.into())
    }

    /// The full URL, password included: only for opening the connection.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by [`REDACTED`].
    pub fn redacted(&self) -> String {
        redact_url_credentials(&self.0)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({:?})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Configuration that cannot be used; the binary exits 78 (EX_CONFIG).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path} does not exist")]
    MissingFile { path: PathBuf },
    #[error("invalid configuration: {0}")]
    Invalid(#[from] config::ConfigError),
    #[error("invalid configuration: reconcile.batch_size must be at least 1")]
    ZeroBatchSize,
    #[error("invalid configuration: {0}")]
    Setting(String),
}

impl Settings {
    /// The effective settings as TOML that [`Settings::load_from`] reads back, every
    /// secret replaced by [`REDACTED`] (`tally config`).
    pub fn to_redacted_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(self)
            .map_err(|error| ConfigError::Setting(format!("cannot print the settings as TOML: {error}")))
    }

    /// Loads the layers from the process environment.
    pub fn load(config_file: Option<&Path>) -> Result<Settings, ConfigError> {
        let environment: HashMap<String, String> = std::env::vars().collect();
        Settings::load_from(config_file, &environment)
    }

    /// Loads the layers with an explicit environment (tests pass their own).
    pub fn load_from(
        config_file: Option<&Path>,
        environment: &HashMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let explicit = config_file
            .map(Path::to_path_buf)
            .or_else(|| environment.get("TALLY_CONFIG").map(PathBuf::from));
        let mut builder = config::Config::builder();
        match explicit {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError::MissingFile { path });
                }
                builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
            }
            None => {
                builder = builder.add_source(
                    config::File::with_name("tally.toml")
                        .format(config::FileFormat::Toml)
                        .required(false),
                );
            }
        }
        // Only `TALLY_<SECTION>__<KEY>` names are settings; other TALLY_ variables
        // (TALLY_CONFIG, TALLY_DATABASE_URL, test switches) must not reach the keys.
        let layered: HashMap<String, String> = environment
            .iter()
            .filter(|(key, _)| key.starts_with("TALLY_") && key.contains("__"))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("TALLY")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(layered)),
        );
        if let Some(url) = environment.get("TALLY_DATABASE_URL") {
            builder = builder.set_override("database.url", url.clone())?;
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        if settings.database.pool_size == 0 || settings.database.connect_timeout_seconds == 0 {
            return Err(ConfigError::Setting(
                "database.pool_size and database.connect_timeout_seconds must be at least 1".into(),
            ));
        }
        if settings.reconcile.batch_size == 0 {
            return Err(ConfigError::ZeroBatchSize);
        }
        if settings.sync.batch_size == 0 || settings.bookkeeper_sync.batch_size == 0 {
            return Err(ConfigError::Setting(
                "sync.batch_size and bookkeeper_sync.batch_size must be at least 1".into(),
            ));
        }
        if settings.retention.batch_size == 0 {
            return Err(ConfigError::Setting("retention.batch_size must be at least 1".into()));
        }
        settings.bookkeeper_sync.retry_policy()?;
        if settings.ingest.batch_size == 0 || settings.ingest.couchdb.page_size == 0 {
            return Err(ConfigError::Setting(
                "ingest.batch_size and ingest.couchdb.page_size must be at least 1".into(),
            ));
        }
        settings
            .ingest
            .classifiers()
            .map_err(|error| ConfigError::Setting(format!("ingest.number_classifiers: {error}")))?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_example_file_documents_exactly_the_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("tally.example.toml");
        let loaded = Settings::load_from(Some(&example), &HashMap::new()).expect("the example parses");
        let defaults = Settings::load_from(None, &HashMap::new()).expect("defaults load");
        assert_eq!(format!("{loaded:?}"), format!("{defaults:?}"));
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn with_nothing_configured_the_database_is_the_local_sqlite_file() {
        let settings = Settings::load_from(None, &env(&[])).expect("defaults load");
        assert_eq!(settings.database.url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(settings.reconcile.batch_size, 500);
    }

    #[test]
    fn environment_beats_the_file_and_the_short_url_beats_everything() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(
            file,
            "[database]\nurl = \"sqlite://from-file.db\"\n[reconcile]\nbatch_size = 7"
        )
        .expect("write");
        let from_file = Settings::load_from(Some(file.path()), &env(&[])).expect("file loads");
        assert_eq!(from_file.database.url.expose(), "sqlite://from-file.db");
        assert_eq!(from_file.reconcile.batch_size, 7);

        let layered = Settings::load_from(
            Some(file.path()),
            &env(&[
                ("TALLY_RECONCILE__BATCH_SIZE", "9"),
                ("TALLY_DATABASE__URL", "sqlite://env.db"),
                ("TALLY_REQUIRE_POSTGRES", "1"),
            ]),
        )
        .expect("env loads");
        assert_eq!(layered.reconcile.batch_size, 9);
        assert_eq!(layered.database.url.expose(), "sqlite://env.db");

        let short = Settings::load_from(
            Some(file.path()),
            &env(&[
                ("TALLY_DATABASE__URL", "sqlite://env.db"),
                ("TALLY_DATABASE_URL", "postgres://u:p@h/db"),
            ]),
        )
        .expect("short url loads");
        assert_eq!(short.database.url.expose(), "postgres://u:p@h/db");
    }

    #[test]
    fn passwords_never_print() {
        let url = DatabaseUrl::new("postgres://tally:s3cret@db.example:5432/tally");
        assert_eq!(url.to_string(), "postgres://tally:<redacted>@db.example:5432/tally");
        let settings = Settings {
            database: DatabaseSettings {
                url,
                ..DatabaseSettings::default()
            },
            ..Settings::default()
        };
        assert!(!format!("{settings:?}").contains("s3cret"));
    }

    #[test]
    fn couchdb_credentials_never_print() {
        let settings = Settings::load_from(
            None,
            &env(&[
                ("TALLY_INGEST__COUCHDB__URL", "http://tally:in-url@couch.internal:5984/"),
                ("TALLY_INGEST__COUCHDB__PASSWORD", "s3cret"),
            ]),
        )
        .expect("loads");
        let printed = format!("{settings:?}");
        assert!(!printed.contains("in-url") && !printed.contains("s3cret"), "{printed}");
        assert_eq!(settings.ingest.couchdb.password.expose(), "s3cret");
    }

    #[test]
    fn url_credentials_are_redacted_up_to_the_path() {
        let table = [
            ("https://u:pw@host/", "https://u:<redacted>@host/"),
            ("https://u:p@ss@host:8443/x?y=1", "https://u:<redacted>@host:8443/x?y=1"),
            ("https://host/a@b", "https://host/a@b"),
            ("https://user@host/", "https://user@host/"),
            ("sqlite://./tally.db", "sqlite://./tally.db"),
            ("", ""),
        ];
        for (url, expected) in table {
            assert_eq!(redact_url_credentials(url), expected, "{url}");
        }
    }

    #[test]
    fn the_printed_toml_hides_every_secret_and_reads_back_the_same() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(
            file,
            "[database]\nurl = \"postgres://tally:db-pw@db.internal/tally\"\n\
             [bookkeepers.http]\nhttp_url = \"https://u:http-pw@books.example/invoices\"\n\
             sale_url = \"https://u:sale-pw@books.example/sales\"\n\
             authorization_header = \"Bearer api-token\"\n\
             [ingest.couchdb]\nurl = \"http://admin:couch-url-pw@couch:5984\"\npassword = \"couch-pw\"\n\
             [reconcile]\nbatch_size = 7"
        )
        .expect("write");
        let settings = Settings::load_from(Some(file.path()), &env(&[])).expect("loads");
        let printed = settings.to_redacted_toml().expect("prints");
        for secret in ["db-pw", "http-pw", "sale-pw", "api-token", "couch-url-pw", "couch-pw"] {
            assert!(!printed.contains(secret), "{secret} shown:\n{printed}");
        }
        assert!(
            printed.contains("https://u:<redacted>@books.example/invoices"),
            "{printed}"
        );
        assert!(printed.contains("authorization_header = \"<redacted>\""), "{printed}");
        let mut reread = tempfile::NamedTempFile::new().expect("temp file");
        reread.write_all(printed.as_bytes()).expect("write");
        let reloaded = Settings::load_from(Some(reread.path()), &env(&[])).expect("the printed TOML loads");
        assert_eq!(reloaded.to_redacted_toml().expect("prints"), printed);
        assert_eq!(reloaded.reconcile.batch_size, 7);
    }

    #[test]
    fn a_bad_number_classifier_is_a_configuration_error() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(file, "[[ingest.number_classifiers]]\nname = \"x\"\nregex = \"(\"").expect("write");
        let error = Settings::load_from(Some(file.path()), &env(&[])).expect_err("refused");
        assert!(error.to_string().contains("ingest.number_classifiers"), "{error}");
    }

    #[test]
    fn a_missing_explicit_file_is_a_configuration_error() {
        let error = Settings::load_from(Some(Path::new("/nonexistent/tally.toml")), &env(&[]))
            .expect_err("missing file must fail");
        assert!(matches!(error, ConfigError::MissingFile { .. }));
    }

    #[test]
    fn an_unknown_key_is_rejected() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(file, "[reconcile]\nbatch_sise = 7").expect("write");
        assert!(Settings::load_from(Some(file.path()), &env(&[])).is_err());
    }
}

//! The command line: what the user typed, as a closed set of commands.
//!
//! Parsing only; `main.rs` runs the commands and maps their outcomes to exit codes.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "tally",
    version,
    about = "Services-billing engine: reconcile, price, invoice, deliver."
)]
pub struct Cli {
    /// A TOML settings file (default: $TALLY_CONFIG, else ./tally.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Price service plans against quantities, without a database (`quote-format.md`).
    Quote {
        /// The request file, or `-` for standard input.
        #[arg(long, short, value_name = "FILE")]
        input: PathBuf,
    },
    /// Create the database if needed (SQLite) and apply pending schema migrations. The
    /// other commands refuse a SQLite file that does not exist (exit 78) instead of
    /// creating an empty one.
    Migrate,
    /// Run one job once.
    Run {
        #[command(subcommand)]
        job: Job,
    },
    /// Fill an empty database with a deterministic demo data set.
    Demo(DemoArgs),
    /// Fire the jobs of the jobs directory at their times until stopped (SIGTERM, Ctrl-C).
    Schedule(ScheduleArgs),
    /// Print the effective configuration as TOML that `--config` reads back, every
    /// secret (passwords, tokens, keys, credentials in URLs) replaced by `<redacted>`.
    Config,
    /// List the most recent runs, scheduled and one-shot, newest first.
    Runs(RunsArgs),
    /// Query and change an account's services state (`api.md` §2); changes are written
    /// to the audit log with who made them. Exit codes: 65 bad input, unknown account
    /// or plan, 77 not permitted, 1 other failures.
    Services {
        #[command(flatten)]
        output: OpsOutputArgs,
        #[command(subcommand)]
        operation: ServicesOperation,
    },
    /// Serve the HTTP API (`api.md`) until stopped (SIGTERM, Ctrl-C).
    Serve(ServeArgs),
    /// Manage the tokens of the HTTP API.
    Tokens {
        #[command(subcommand)]
        operation: TokensOperation,
    },
    /// Accounts: list, show, find them and their hierarchy; their api keys.
    Accounts {
        #[command(subcommand)]
        operation: AccountsOperation,
    },
    /// Feed the inventory the platform's documents (Kazoo accounts, users, devices,
    /// numbers…): from a dump, or by following a CouchDB server. Exit codes: 65 some
    /// documents rejected (the rest applied), 75 CouchDB unreachable (checkpoints kept).
    Inventory {
        #[command(subcommand)]
        operation: InventoryOperation,
    },
    /// List the deliveries to bookkeepers that wait (leased, for a retry, for the
    /// bookkeeper's configuration, failed for good, queued), or make them due now with
    /// `deliveries retry`.
    Deliveries(DeliveriesArgs),
    /// Vendors' service plans and the legacy service_plans view (`api.md` §3), and
    /// `plans import` to load plan documents.
    Plans {
        #[command(flatten)]
        output: OpsOutputArgs,
        #[command(subcommand)]
        operation: PlansOperation,
    },
    /// Copy the database to PATH while tally may be running: SQLite, an online,
    /// consistent copy checked with `PRAGMA integrity_check`; PostgreSQL, nothing is
    /// copied: prints the `pg_dump` command and checks its version against the
    /// server's. Exit codes: 0 copied (or the command printed), 2 PATH exists without
    /// `--force`, 78 pg_dump missing or older than the server, 75 database unreachable.
    Backup(BackupArgs),
    /// Print a shell completion script (e.g. `tally completions bash >
    /// /etc/bash_completion.d/tally`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per command to a directory.
    Man(ManArgs),
}

impl Command {
    /// The command only reads and prints: a reader that closes standard output early
    /// (`tally runs | head -1`) got what it wanted, so the command ends with 0.
    pub fn reads_only(&self) -> bool {
        match self {
            Command::Quote { .. }
            | Command::Config
            | Command::Runs(_)
            | Command::Completions { .. }
            | Command::Man(_) => true,
            Command::Accounts { operation } => match operation {
                AccountsOperation::List(_)
                | AccountsOperation::Get(_)
                | AccountsOperation::Tree(_)
                | AccountsOperation::Find(_) => true,
                AccountsOperation::ApiKey(_) => false,
            },
            Command::Tokens { operation } => match operation {
                TokensOperation::List(_) => true,
                TokensOperation::Create(_) | TokensOperation::Revoke(_) => false,
            },
            Command::Deliveries(args) => args.operation.is_none(),
            Command::Inventory { operation } => match operation {
                InventoryOperation::Rejected(_) => true,
                InventoryOperation::Import(_) | InventoryOperation::Follow(_) => false,
            },
            Command::Migrate
            | Command::Backup(_)
            | Command::Run { .. }
            | Command::Demo(_)
            | Command::Schedule(_)
            | Command::Services { .. }
            | Command::Serve(_)
            | Command::Plans { .. } => false,
        }
    }
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where the copy goes (SQLite), or the file the printed `pg_dump` writes.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// Replace PATH if it exists (never the live database).
    #[arg(long)]
    pub force: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `tally.1` and one `tally-COMMAND.1` page per command here instead of
    /// printing every page to standard output.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DeliveriesArgs {
    #[command(subcommand)]
    pub operation: Option<DeliveriesOperation>,
    #[command(flatten)]
    pub list: DeliveriesListArgs,
}

#[derive(Debug, Args)]
pub struct DeliveriesListArgs {
    /// Only this account's deliveries.
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,
    /// How many to list.
    #[arg(long, default_value_t = 200)]
    pub limit: usize,
    /// Print one JSON object (the deliveries and the pending counts) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesOperation {
    /// Make waiting deliveries due now: those waiting for a retry time and those that
    /// failed for good (past the retry policy's last attempt) alike; their attempt
    /// counts stay, so a failed one gets one more attempt before it is failed again.
    /// Deliveries leased by a worker are left to it until the lease ends. The next
    /// `tally run bookkeeper-sync` (or billing) sends them.
    Retry(DeliveriesRetryArgs),
}

#[derive(Debug, Args)]
pub struct DeliveriesRetryArgs {
    /// Only this account's deliveries.
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,
    /// Print JSON instead of a sentence.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum InventoryOperation {
    /// Apply documents from a file or directory: NDJSON (a document, or an envelope
    /// `{"database": …, "doc": …}`, per line), a CouchDB `_all_docs?include_docs=true`
    /// or `_changes?include_docs=true` response, or a JSON array of documents.
    Import(InventoryImportArgs),
    /// Read the configured CouchDB's `_changes` feeds (`[ingest.couchdb]`) into the
    /// inventory, resuming from the stored checkpoints, until stopped.
    Follow(InventoryFollowArgs),
    /// List the documents kept because they could not be applied, with the reason.
    Rejected(InventoryRejectedArgs),
}

#[derive(Debug, Args)]
pub struct InventoryImportArgs {
    /// A file, a directory of files (one database per file, named after it), or `-`
    /// for standard input.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// The database of every document without an envelope (default: the file's name).
    #[arg(long, value_name = "NAME")]
    pub database: Option<String>,
    /// Recount the accounts the documents changed once they are in.
    #[arg(long)]
    pub reconcile: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InventoryFollowArgs {
    /// Read every feed up to its end once, then stop (the `ingest` job does this).
    #[arg(long)]
    pub once: bool,
    /// After each round of changes, recount the accounts they changed.
    #[arg(long)]
    pub reconcile: bool,
    /// Print each round's report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InventoryRejectedArgs {
    /// How many to list.
    #[arg(long, default_value_t = 50)]
    pub limit: u64,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on (port 0: any free port, printed at start).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Subcommand)]
pub enum TokensOperation {
    /// Create a token acting as an account; it is printed once and stored hashed.
    Create(TokenCreateArgs),
    /// List the tokens (id, account, origin, expiry; never the token itself).
    List(TokenListArgs),
    /// Revoke a token by its listed id (or the token itself), or every token of an
    /// account.
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, Args)]
pub struct TokenListArgs {
    /// Only this account's tokens.
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["token", "account"])))]
pub struct TokenRevokeArgs {
    /// The id `tally tokens list` shows (or the token itself).
    #[arg(value_name = "ID")]
    pub token: Option<String>,
    /// Revoke every token of this account instead.
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AccountsOperation {
    /// List accounts by id: id, name, reseller, parent, standing and plans.
    List(AccountsListArgs),
    /// One account: id, name, realm, reseller, parent, standing and plans.
    Get(AccountsGetArgs),
    /// The hierarchy under an account (default: every root), indented.
    Tree(AccountsTreeArgs),
    /// Accounts whose id starts with TEXT, or whose name or realm contains it (any case).
    Find(AccountsFindArgs),
    /// Set an account's api key (for `PUT /v2/api_auth`): `--generate` makes a new
    /// random key, stores it and prints it once. Ingesting the account's document
    /// later sets the key the document carries.
    ApiKey(ApiKeyArgs),
}

#[derive(Debug, Args)]
pub struct AccountsListArgs {
    /// How many accounts to list.
    #[arg(long, default_value_t = 100)]
    pub limit: u64,
    /// List accounts whose id sorts after this one (the last id of the previous page).
    #[arg(long, value_name = "ID")]
    pub after: Option<String>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AccountsGetArgs {
    /// The account.
    #[arg(value_name = "ACCOUNT")]
    pub account: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AccountsTreeArgs {
    /// The account at the top (default: every account without a parent).
    #[arg(value_name = "ACCOUNT")]
    pub account: Option<String>,
    /// How many accounts to show at most.
    #[arg(long, default_value_t = 1000)]
    pub limit: u64,
    /// Print JSON lines (with each account's depth) instead of an indented tree.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AccountsFindArgs {
    /// An id prefix, or part of a name or realm.
    #[arg(value_name = "TEXT")]
    pub text: String,
    /// How many accounts to list.
    #[arg(long, default_value_t = 100)]
    pub limit: u64,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ApiKeyArgs {
    /// The account.
    #[arg(value_name = "ACCOUNT")]
    pub account: String,
    /// Generate a new key (replacing the current one).
    #[arg(long, required = true)]
    pub generate: bool,
}

/// A lifetime as typed: `90s`, `30m`, `12h`, `7d` or plain seconds; more than zero.
pub fn parse_lifetime(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: give a number with s, m, h or d (e.g. 12h)")),
    };
    let count: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: give a number with s, m, h or d (e.g. 12h)"))?;
    match count.checked_mul(seconds_per_unit) {
        Some(0) => Err("a token must live longer than zero seconds".to_owned()),
        // Beyond a century the Gregorian arithmetic stays far from overflow anyway.
        Some(seconds) if seconds <= 100 * 366 * 86_400 => Ok(std::time::Duration::from_secs(seconds)),
        _ => Err(format!("{text:?}: at most 100 years")),
    }
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// The account the token acts as (and its descendants).
    #[arg(long, value_name = "ID")]
    pub account: String,
    /// The token may act on every account and use the super-admin operations.
    #[arg(long)]
    pub super_admin: bool,
    /// What the token is for.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// The token expires after this long (`90s`, `30m`, `12h`, `7d`); default: never.
    #[arg(long, value_name = "DURATION", value_parser = parse_lifetime)]
    pub expires: Option<std::time::Duration>,
}

/// Who is acting and how to print, shared by every `services` and `plans` command.
#[derive(Debug, Args, Clone, Default)]
pub struct OpsOutputArgs {
    /// The operator named in the audit log (default: $USER, else $LOGNAME, else `unknown`).
    #[arg(long = "as", value_name = "USER", global = true)]
    pub as_user: Option<String>,
    /// Print a readable table (default on a terminal when the data is a list of rows).
    #[arg(long, global = true, conflicts_with = "json")]
    pub table: bool,
    /// Print JSON even on a terminal (the default otherwise).
    #[arg(long, global = true)]
    pub json: bool,
}

/// A JSON input: inline or from a file.
#[derive(Debug, Args, Clone, Default)]
pub struct DataArgs {
    /// The operation's input `data`, as JSON.
    #[arg(long, value_name = "JSON", conflicts_with = "file")]
    pub data: Option<String>,
    /// Read the input `data` from a JSON file (`-` for standard input).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

/// A listing's range, order and paging (`api.md` §1.1).
#[derive(Debug, Args, Clone, Default)]
pub struct RangeArgs {
    /// From this time: Gregorian seconds or a UTC date `YYYY-MM-DD` (its start).
    #[arg(long, value_name = "WHEN")]
    pub from: Option<String>,
    /// Up to this time: Gregorian seconds or a UTC date `YYYY-MM-DD` (its end).
    #[arg(long, value_name = "WHEN")]
    pub to: Option<String>,
    /// Oldest first (default: newest first).
    #[arg(long)]
    pub ascending: bool,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// How many runs to list.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// One JSON object per run.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// The directory of job files (default: the `scheduler.jobs_dir` setting, `jobs/`).
    #[arg(long, value_name = "DIR")]
    pub jobs_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ServicesOperation {
    /// The plans assigned to the account (its `plans` map).
    Get(AccountArg),
    /// Assign and unassign plans, set global overrides, then reprice.
    Update(ServicesUpdateArgs),
    /// Set the legacy billing id: the account itself or its parent.
    BillingId(BillingIdArgs),
    /// Show an account's standing, or set it by hand (`sync-and-bookkeepers.md` §6).
    Status(StatusArgs),
    /// Assign one plan (with overrides), then reprice.
    Assign(AssignArgs),
    /// Unassign one plan, then reprice.
    Unassign(AccountPlanArgs),
    /// Show the manual quantities, or set them (replace; `--merge` merges, `null` deletes).
    Manual(ManualArgs),
    /// Show the global overrides, or set them with `--data`/`--file` (replace or `--merge`).
    Overrides(OverridesArgs),
    /// List the account's audit logs, newest first.
    Audit(AuditArgs),
    /// Show one audit log.
    AuditLog(AuditLogArgs),
    /// Day summaries of quantity changes, per source and day.
    AuditSummary(AuditSummaryArgs),
    /// Price a hypothetical plan set (`{plans|add, delete?, overrides?}`); nothing is saved.
    Quote(QuoteArgs),
    /// Recount the account's quantities now.
    Reconcile(AccountArg),
    /// Reprice the account and deliver its invoices now.
    Sync(AccountArg),
    /// Credit the account with a manual top-up through its bookkeeper.
    Topup(ServicesTopupArgs),
    /// The full billing summary: plans, invoices, quantities, standing.
    Summary(AccountArg),
    /// How every invoice line was reached: the plans and override layers behind each
    /// field, the quantity's buckets, the bound, rate, discounts and rounding applied.
    Explain(ExplainArgs),
    /// The plans the account's reseller offers.
    Available(DetailsArgs),
    /// The override fields a reseller may edit (the master account's without ACCOUNT).
    Editable(OptionalAccountArg),
}

#[derive(Debug, Subcommand)]
pub enum PlansOperation {
    /// The plans the account stores as a vendor.
    List(DetailsArgs),
    /// One plan the account stores as a vendor.
    Get(AccountPlanArgs),
    /// Assign (`--add`) and unassign (`--delete`) plans; prints the merged plan.
    Update(PlansUpdateArgs),
    /// Assign one plan; prints the merged plan.
    Add(AccountPlanArgs),
    /// Unassign one plan; prints the merged plan.
    Remove(AccountPlanArgs),
    /// Replace the overrides of every assigned plan (`{"overrides": {PLAN: partial plan}}`).
    Override(AccountDataArgs),
    /// The legacy "current services" view.
    Current(AccountArg),
    /// The plans the account's reseller offers, or one of them.
    Available(PlansAvailableArgs),
    /// Load plan documents (one, or an array) into a vendor's catalog.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct AccountArg {
    /// The account.
    pub account: String,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The account.
    pub account: String,
    /// Only this line: CATEGORY.ITEM (the plan's item key or its `as` name).
    pub item: Option<String>,
}

#[derive(Debug, Args)]
pub struct OptionalAccountArg {
    /// The account.
    pub account: Option<String>,
}

#[derive(Debug, Args)]
pub struct AccountPlanArgs {
    /// The account.
    pub account: String,
    /// The plan id.
    pub plan: String,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("input").args(["data", "file"]).required(true))]
pub struct AccountDataArgs {
    /// The account.
    pub account: String,
    #[command(flatten)]
    pub input: DataArgs,
}

#[derive(Debug, Args)]
pub struct DetailsArgs {
    /// The account.
    pub account: String,
    /// Whole plan documents instead of `{id, name, description, category}`.
    #[arg(long)]
    pub details: bool,
}

#[derive(Debug, Args)]
pub struct ServicesUpdateArgs {
    /// The account.
    pub account: String,
    /// Assign this plan (repeatable, in order).
    #[arg(long = "add", value_name = "PLAN", conflicts_with_all = ["data", "file"])]
    pub add: Vec<String>,
    /// Unassign this plan (repeatable).
    #[arg(long = "delete", value_name = "PLAN", conflicts_with_all = ["data", "file"])]
    pub delete: Vec<String>,
    #[command(flatten)]
    pub input: DataArgs,
    /// Merge `overrides` into the stored ones instead of replacing them.
    #[arg(long)]
    pub merge: bool,
}

#[derive(Debug, Args)]
pub struct PlansUpdateArgs {
    /// The account.
    pub account: String,
    /// Assign this plan (repeatable, in order).
    #[arg(long = "add", value_name = "PLAN")]
    pub add: Vec<String>,
    /// Unassign this plan (repeatable).
    #[arg(long = "delete", value_name = "PLAN")]
    pub delete: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BillingIdArgs {
    /// The account.
    pub account: String,
    /// The new billing id: the account itself or its direct parent.
    pub billing_id: String,
}

#[derive(Debug, Args)]
pub struct AssignArgs {
    /// The account.
    pub account: String,
    /// The plan id.
    pub plan: String,
    /// The vendor whose catalog holds the plan (default: the account's reseller).
    #[arg(long, value_name = "ID")]
    pub vendor: Option<String>,
    /// Overrides of this plan, as a JSON object.
    #[arg(long, value_name = "JSON")]
    pub overrides: Option<String>,
    /// Merge `--overrides` into the plan's stored overrides instead of replacing them.
    #[arg(long)]
    pub merge: bool,
}

#[derive(Debug, Args)]
pub struct ManualArgs {
    /// The account.
    pub account: String,
    /// The manual quantities, as JSON `{CATEGORY: {ITEM: N}}`.
    #[arg(long, value_name = "JSON", conflicts_with_all = ["data", "file"])]
    pub set: Option<String>,
    /// One manual quantity, `CATEGORY.ITEM=N` (`=null` deletes with `--merge`);
    /// repeatable. Without `--merge` the listed items replace the whole bucket.
    #[arg(long = "set-item", value_name = "CATEGORY.ITEM=N")]
    pub set_items: Vec<String>,
    #[command(flatten)]
    pub input: DataArgs,
    /// Merge into the stored quantities (PATCH) instead of replacing them.
    #[arg(long)]
    pub merge: bool,
}

#[derive(Debug, Args)]
pub struct OverridesArgs {
    /// The account.
    pub account: String,
    #[command(flatten)]
    pub input: DataArgs,
    /// Merge into the stored overrides (PATCH) instead of replacing them.
    #[arg(long)]
    pub merge: bool,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The account.
    pub account: String,
    #[command(flatten)]
    pub range: RangeArgs,
    /// Rows per page (default 50).
    #[arg(long, value_name = "N", conflicts_with = "all")]
    pub page_size: Option<usize>,
    /// Start at this key (the `next_start_key` of the previous page).
    #[arg(long, value_name = "KEY", conflicts_with = "all")]
    pub start_key: Option<String>,
    /// Every row at once, unpaged.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct AuditLogArgs {
    /// The account.
    pub account: String,
    /// The audit log's id.
    pub audit_id: String,
}

#[derive(Debug, Args)]
pub struct AuditSummaryArgs {
    /// The account.
    pub account: String,
    /// Only this source service (e.g. `devices`): one row per day.
    pub source: Option<String>,
    #[command(flatten)]
    pub range: RangeArgs,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("input").args(["data", "file"]).required(true))]
pub struct QuoteArgs {
    /// The account whose quantities and plans the quote starts from (none: an empty one).
    pub account: Option<String>,
    #[command(flatten)]
    pub input: DataArgs,
}

#[derive(Debug, Args)]
pub struct ServicesTopupArgs {
    /// The account.
    pub account: String,
    /// Dollars, as exact decimal text (e.g. `25.50`).
    pub amount: String,
}

#[derive(Debug, Args)]
pub struct PlansAvailableArgs {
    /// The account.
    pub account: String,
    /// Only this plan, as a whole document.
    pub plan: Option<String>,
    /// Whole plan documents instead of `{id, name, description, category}`.
    #[arg(long, conflicts_with = "plan")]
    pub details: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A JSON file holding one plan document (with `id` or `_id`) or an array; `-` for
    /// standard input.
    pub file: PathBuf,
    /// The vendor account whose catalog receives the plans.
    #[arg(long, value_name = "ACCOUNT")]
    pub vendor: String,
    /// Write nothing: price every account assigned a plan the import creates or
    /// changes, against its current quantities, and report old and new recurring
    /// totals, the lines that change and the sums per reseller, largest change first.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("standing").args(["good", "bad"]))]
pub struct StatusArgs {
    /// The account.
    pub account: String,
    /// Put the account in good standing.
    #[arg(long, conflicts_with = "bad")]
    pub good: bool,
    /// Put the account in bad standing (`delinquent`); needs `--reason`.
    #[arg(long, requires = "reason", conflicts_with = "good")]
    pub bad: bool,
    /// Why the account is in bad standing.
    #[arg(long, value_name = "TEXT", requires = "standing")]
    pub reason: Option<String>,
    /// A machine-readable code for the reason (a number).
    #[arg(long, value_name = "CODE", requires = "standing")]
    pub reason_code: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Job {
    /// Recount quantities, roll up cascades, record what changed.
    Reconcile(ReconcileArgs),
    /// Reprice accounts against their merged plans and record changed invoices.
    Sync(SyncArgs),
    /// Deliver queued invoices to their bookkeepers and record the answers.
    BookkeeperSync(BookkeeperSyncArgs),
    /// The nightly run: reconcile, sync and bookkeeper-sync, with one report.
    Billing(BillingArgs),
    /// Top up accounts whose balance fell under their threshold (needs `[topup] enable`).
    Topup(TopupArgs),
    /// Delete finished records older than the `[retention]` settings (runs,
    /// acknowledged deliveries, change records, answered audit logs if configured).
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Count what would be deleted and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write the run's figures in the Prometheus text format to this file (atomically).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TopupArgs {
    /// Examine only this account (repeatable); default: every account with top-up settings.
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write the run's figures in the Prometheus text format to this file (atomically).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BillingArgs {
    /// Bill only this account (repeatable); default: every account.
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,
    /// Load the demo data set first when the database has no account, and deliver
    /// HTTP invoices to a loopback demo bookkeeper when none is configured.
    #[arg(long)]
    pub demo: bool,
    /// Recount every account (default: only the accounts whose inventory changed
    /// since their last recount, unless a full recount is due).
    #[arg(long)]
    pub full: bool,
    /// Report what the run would do and write nothing: the deliveries already due,
    /// then every invoice that would change (its changed lines) with its delivery,
    /// then a summary. Each record is printed as soon as it is found (one JSON object
    /// per line with `--json`). No run is recorded.
    #[arg(long, conflicts_with = "demo")]
    pub dry_run: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write the run's figures in the Prometheus text format to this file (atomically).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Reprice only this account (repeatable); default: accounts marked for repricing.
    #[arg(long = "account", value_name = "ID", conflicts_with = "all")]
    pub accounts: Vec<String>,
    /// Reprice every account that has plans.
    #[arg(long)]
    pub all: bool,
    /// Print the invoice changes that would be recorded and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Charge activation for the units of accounts priced for the first time
    /// (default: their first invoices are a baseline without activation charges).
    #[arg(long)]
    pub charge_activations: bool,
    /// Print the closing summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write the run's figures in the Prometheus text format to this file (atomically).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BookkeeperSyncArgs {
    /// Print the closing summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write the run's figures in the Prometheus text format to this file (atomically).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Reconcile only this account (repeatable); default: every account.
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,
    /// Reconcile only the accounts whose inventory changed since their last recount
    /// (marked by ingestion), and their ancestors' cascades.
    #[arg(long, conflicts_with = "accounts")]
    pub changed: bool,
    /// Print the changes that would be made and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the closing summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write the run's figures in the Prometheus text format to this file (atomically).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Accounts in the tree, master included (about 100 objects each).
    #[arg(long, default_value_t = 1_000)]
    pub accounts: u64,
    /// Seed of the generated ids and inventory.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the demo's Kazoo documents to this file as NDJSON envelopes
    /// (`{"database": …, "doc": …}` per line; `-` for standard output) instead of
    /// loading them: the input `tally inventory import` reads.
    #[arg(long, value_name = "PATH")]
    pub documents: Option<PathBuf>,
}

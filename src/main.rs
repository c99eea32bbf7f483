//! The `freshwatch` command: parse, load config, set up logging, run, map errors to exit codes.
//!
//! Exit codes: 0 success, 1 invalid config, 2 bad command line, 3 could not start or failed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

const EXIT_CONFIG: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_FAILURE: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "freshwatch",
    version,
    about = "Pages when a Kafka feed goes quiet"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "FRESHWATCH_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the watchdog.
    Run {
        #[arg(long, short, env = "FRESHWATCH_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file and print the resolved feeds and thresholds.
    CheckConfig {
        #[arg(long, short, env = "FRESHWATCH_CONFIG")]
        config: PathBuf,
    },
    /// Run everything in-process against a mock Kafka cluster; no servers needed.
    Demo {
        /// Stop by itself after this long (e.g. 60s).
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        run_for: Option<Duration>,
        /// Where to serve the API and metrics.
        #[arg(long, default_value = "127.0.0.1:9187")]
        listen: SocketAddr,
    },
    /// Replay what Kafka still holds and print the alerts that would have fired; sends nothing,
    /// writes no state, never joins the consumer group.
    Backtest {
        #[arg(long, short, env = "FRESHWATCH_CONFIG")]
        config: PathBuf,
        /// Only this feed.
        #[arg(long)]
        feed: Option<String>,
        /// How far back to read (e.g. 7d, 36h).
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        since: Duration,
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// Print a running instance's feeds, stalest first.
    Status {
        #[arg(long, default_value = "http://127.0.0.1:9187", env = "FRESHWATCH_URL")]
        url: String,
        /// `http.read_token`, when the instance sets one.
        #[arg(long, env = "FRESHWATCH_READ_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Hold notifications for a known job (backfill, migration, a tenant leaving).
    Silence {
        #[command(subcommand)]
        action: SilenceAction,
        #[arg(
            long,
            default_value = "http://127.0.0.1:9187",
            env = "FRESHWATCH_URL",
            global = true
        )]
        url: String,
        /// The admin token (`http.admin_token`), to add or expire.
        #[arg(
            long,
            env = "FRESHWATCH_ADMIN_TOKEN",
            hide_env_values = true,
            global = true
        )]
        token: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum SilenceAction {
    /// Silence a feed's keys (`--feed`, `--key`, globs) or consumer groups (`--group`).
    Add {
        #[arg(long)]
        feed: Option<String>,
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        group: Option<String>,
        /// How long, from now (e.g. 2h).
        #[arg(long = "for")]
        duration: String,
        /// Why: shown with every held alert.
        #[arg(long)]
        comment: String,
        #[arg(long, env = "USER")]
        created_by: Option<String>,
        /// Also hold DataLossImminent (critical) and DataLost, which break through otherwise.
        #[arg(long)]
        allow_data_loss: bool,
    },
    /// List active, pending and recently expired silences.
    List,
    /// End a silence now.
    Expire { id: String },
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,librdkafka=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Status { url, token } => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => return fail(anyhow::Error::new(error)),
            };
            let fetched = runtime.block_on(async {
                let token = token.as_deref();
                let feeds = freshwatch::status::fetch(&url, token).await?;
                let groups = freshwatch::status::fetch_groups(&url, token).await?;
                let clusters = freshwatch::status::fetch_clusters(&url, token).await?;
                Ok::<_, freshwatch::status::StatusError>((feeds, groups, clusters))
            });
            match fetched {
                Ok((feeds, groups, clusters)) => {
                    print!("{}", freshwatch::status::render(&feeds, &groups, &clusters));
                    ExitCode::SUCCESS
                }
                Err(error) => fail(error.into()),
            }
        }
        Command::Silence { action, url, token } => silence(action, &url, token.as_deref()),
        Command::Backtest {
            config,
            feed,
            since,
            format,
        } => {
            init_tracing(cli.log_format);
            backtest(
                &config,
                freshwatch::backtest::Options { feed, since },
                format,
            )
        }
        Command::Run { config: path } => {
            init_tracing(cli.log_format);
            let config = match freshwatch::config::load(&path) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            serve(
                |shutdown| async move {
                    freshwatch::app::reload::serve(
                        path,
                        config,
                        Arc::new(freshwatch::clock::SystemClock),
                        shutdown,
                    )
                    .await
                    .context("freshwatch stopped")?;
                    Ok(())
                },
                None,
            )
        }
        Command::Demo { run_for, listen } => {
            init_tracing(cli.log_format);
            serve(
                move |shutdown| freshwatch::demo::run(listen, shutdown),
                run_for,
            )
        }
    }
}

/// Runs `body` on a multi-threaded runtime; SIGINT, SIGTERM or `run_for` fire its shutdown token.
fn serve<F, Fut>(body: F, run_for: Option<Duration>) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(anyhow::Error::new(error)),
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            match run_for {
                Some(duration) => {
                    tokio::select! {
                        _ = freshwatch::app::shutdown_signal() => {}
                        _ = tokio::time::sleep(duration) => tracing::info!("--for elapsed"),
                    }
                }
                None => freshwatch::app::shutdown_signal().await,
            }
            trigger.cancel();
        });
        body(shutdown).await
    });
    // Threads that did not stop within the shutdown grace (a source stuck in librdkafka, a
    // blocking join) must not hold the exit: SIGTERM ends the process within 10 s.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(error),
    }
}

fn silence(action: SilenceAction, url: &str, token: Option<&str>) -> ExitCode {
    use freshwatch::silence::client;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(anyhow::Error::new(error)),
    };
    let result = runtime.block_on(async {
        match action {
            SilenceAction::Add {
                feed,
                key,
                group,
                duration,
                comment,
                created_by,
                allow_data_loss,
            } => {
                let request = serde_json::json!({
                    "matchers": {"feed": feed, "key": key, "group": group},
                    "duration": duration,
                    "comment": comment,
                    "created_by": created_by.unwrap_or_default(),
                    "allow_data_loss": allow_data_loss,
                });
                let made = client::add(url, token, &request).await?;
                Ok(format!("{}\n", made.id))
            }
            SilenceAction::List => Ok(client::render_list(&client::list(url, token).await?)),
            SilenceAction::Expire { id } => {
                let ended = client::expire(url, token, &id).await?;
                Ok(format!("{} expired at {}\n", ended.id, ended.ends_at))
            }
        }
    });
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(anyhow::Error::new::<client::ClientError>(error)),
    }
}

fn backtest(
    path: &std::path::Path,
    options: freshwatch::backtest::Options,
    format: ReportFormat,
) -> ExitCode {
    use freshwatch::backtest::BacktestError;
    let config = match freshwatch::config::load(path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match freshwatch::backtest::run(&config, &options, &freshwatch::clock::SystemClock) {
        Ok(report) => {
            match format {
                ReportFormat::Text => print!("{}", report.render_text()),
                ReportFormat::Json => println!("{:#}", report.to_json()),
            }
            ExitCode::SUCCESS
        }
        Err(error @ BacktestError::UnknownFeed { .. }) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(error) => fail(anyhow::Error::new(error).context("backtest failed")),
    }
}

fn fail(error: anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::from(EXIT_FAILURE)
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match freshwatch::config::load(path) {
        Ok(config) => {
            for warning in freshwatch::config::window_warnings(&config.feeds) {
                eprintln!("warning: {warning}");
            }
            print!("{}", freshwatch::config::describe(&config));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

//! `demo-backend --id b1 --listen 127.0.0.1:8081 [--delay-ms 50] [--fail-rate 0.1] [--unhealthy]
//! [--load-report text|json [--capacity-rps 100] [--report-only-when-asked]]
//! [--queue-slots 4 [--service-ms 20]]`

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
#[command(about = "HTTP backend that answers with its id; for the demo and the tests")]
struct Args {
    /// Id returned in the body and the x-backend header.
    #[arg(long)]
    id: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Delay added to every request but /healthz, in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Fraction of requests (0.0 to 1.0) answered with --fail-status.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    fail_rate: f64,
    /// Status used for failed requests.
    #[arg(long, default_value_t = 500)]
    fail_status: u16,
    /// Answer /healthz with 503.
    #[arg(long)]
    unhealthy: bool,
    /// Delay before answering /healthz, in milliseconds (a hanging health endpoint).
    #[arg(long, default_value_t = 0)]
    health_delay_ms: u64,
    /// Add an ORCA load report (`endpoint-load-metrics`) to every answer but /healthz, in this
    /// format: text or json.
    #[arg(long, value_name = "FORMAT")]
    load_report: Option<demo_backend::ReportFormat>,
    /// Requests per second the backend can take: the reported utilization is rate / capacity.
    #[arg(long, requires = "load_report", value_parser = parse_positive)]
    capacity_rps: Option<f64>,
    /// Report load only to requests carrying an endpoint-load-metrics-format header.
    #[arg(long, requires = "load_report")]
    report_only_when_asked: bool,
    /// Serve at most this many requests at once; the others wait in a queue.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    queue_slots: Option<u64>,
    /// Time each request holds its queue slot, in milliseconds (on top of --delay-ms).
    #[arg(long, requires = "queue_slots", default_value_t = 0)]
    service_ms: u64,
}

fn parse_positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a fraction from 0.0 to 1.0")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let options = demo_backend::Options {
        id: args.id.clone(),
        delay: Duration::from_millis(args.delay_ms),
        fail_rate: args.fail_rate,
        fail_status: args.fail_status,
        healthy: !args.unhealthy,
        health_delay: Duration::from_millis(args.health_delay_ms),
        set_cookie: None,
        extra_headers: Vec::new(),
        echo_headers: Vec::new(),
        strict_host: false,
        load_report: args.load_report.map(|format| demo_backend::LoadReport {
            format,
            capacity_rps: args.capacity_rps,
            only_when_asked: args.report_only_when_asked,
        }),
        queue: args.queue_slots.map(|slots| demo_backend::QueueSim {
            slots: usize::try_from(slots).unwrap_or(usize::MAX),
            service: Duration::from_millis(args.service_ms),
        }),
    };
    let running = match demo_backend::start(args.listen, options).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("demo-backend {}: cannot listen on {}: {e}", args.id, args.listen);
            return ExitCode::FAILURE;
        }
    };
    println!("demo-backend {} listening on {}", args.id, running.addr);
    let _ = tokio::signal::ctrl_c().await;
    running.stop().await;
    ExitCode::SUCCESS
}

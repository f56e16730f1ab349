//! `demo-backend --id b1 --listen 127.0.0.1:8081 [--delay-ms 50] [--fail-rate 0.1] [--unhealthy]`

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

//! A minimal external endpoint picker: the design of the Gateway API Inference Extension, where
//! Envoy's `envoy.filters.http.ext_proc` filter asks a gRPC service about every request and the
//! service answers with the `x-gateway-destination-endpoint` header that the cluster's
//! `override_host` policy reads. This one picks by round robin over the backends given on its
//! command line; the benches run it beside Envoy as what envoy-lb is compared with
//! (benches/common/, `make ext-proc-picker`).
//!
//! Usage: `ext-proc-picker [--listen 127.0.0.1:0] <ip:port>...`; it prints `listening on
//! <ip:port>` (the bound address) on its first line of stdout, then serves until killed.
//!
//! Protocol (envoy.service.ext_proc.v3): one bidirectional stream per HTTP request. Request
//! headers are answered with a header mutation that sets the steering header (replacing any
//! value the client sent); every other message is answered CONTINUE, unchanged. A message in
//! observability mode gets no answer (the protocol says the server must not answer it). A
//! message that carries nothing is refused with INVALID_ARGUMENT, which ends the stream. When
//! Envoy ends its side, or its stream fails, the answer stream ends.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use clap::Parser;
use envoy_types::pb::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderValue, HeaderValueOption,
};
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::{
    ExternalProcessor, ExternalProcessorServer,
};
use envoy_types::pb::envoy::service::ext_proc::v3::{
    processing_request::Request, processing_response::Response, BodyResponse, CommonResponse,
    HeaderMutation, HeadersResponse, ProcessingRequest, ProcessingResponse, TrailersResponse,
};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Status, Streaming};

/// The header the pool cluster's `override_host` policy reads (envoy/envoy.yaml).
const STEERING_HEADER: &str = "x-gateway-destination-endpoint";

#[derive(Parser)]
#[command(about = "Round-robin endpoint picker over Envoy's ext_proc (benchmark comparison)")]
struct Args {
    /// Address to listen on (port 0: the kernel picks; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The backends, `ip:port` each, picked in turn.
    #[arg(required = true)]
    backends: Vec<SocketAddr>,
}

/// Round robin over the backends, shared by every stream.
struct Picker {
    /// Each backend's `ip:port`, as the header value.
    endpoints: Vec<Vec<u8>>,
    next: AtomicUsize,
}

impl Picker {
    /// `None` for an empty list.
    fn new(backends: &[SocketAddr]) -> Option<Picker> {
        (!backends.is_empty()).then(|| Picker {
            endpoints: backends.iter().map(|b| b.to_string().into_bytes()).collect(),
            next: AtomicUsize::new(0),
        })
    }

    fn pick(&self) -> Vec<u8> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // `endpoints` is never empty (`new`); `get` keeps this free of a panic path anyway.
        self.endpoints.get(n % self.endpoints.len().max(1)).cloned().unwrap_or_default()
    }

    /// The answer to one message of the stream; `None` when none may be sent.
    fn answer(&self, message: ProcessingRequest) -> Option<Result<ProcessingResponse, Status>> {
        if message.observability_mode {
            return None;
        }
        let cont = || Some(CommonResponse::default());
        let response = match message.request {
            Some(Request::RequestHeaders(_)) => Response::RequestHeaders(HeadersResponse {
                response: Some(CommonResponse {
                    header_mutation: Some(HeaderMutation {
                        set_headers: vec![HeaderValueOption {
                            header: Some(HeaderValue {
                                key: STEERING_HEADER.to_owned(),
                                raw_value: self.pick(),
                                ..HeaderValue::default()
                            }),
                            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
                            ..HeaderValueOption::default()
                        }],
                        remove_headers: Vec::new(),
                    }),
                    ..CommonResponse::default()
                }),
            }),
            Some(Request::ResponseHeaders(_)) => {
                Response::ResponseHeaders(HeadersResponse { response: cont() })
            }
            Some(Request::RequestBody(_)) => {
                Response::RequestBody(BodyResponse { response: cont() })
            }
            Some(Request::ResponseBody(_)) => {
                Response::ResponseBody(BodyResponse { response: cont() })
            }
            Some(Request::RequestTrailers(_)) => {
                Response::RequestTrailers(TrailersResponse { header_mutation: None })
            }
            Some(Request::ResponseTrailers(_)) => {
                Response::ResponseTrailers(TrailersResponse { header_mutation: None })
            }
            None => {
                return Some(Err(Status::invalid_argument("ProcessingRequest carries no message")))
            }
        };
        Some(Ok(ProcessingResponse { response: Some(response), ..ProcessingResponse::default() }))
    }
}

struct Service(Arc<Picker>);

type Answers = std::pin::Pin<Box<dyn Stream<Item = Result<ProcessingResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalProcessor for Service {
    type ProcessStream = Answers;

    async fn process(
        &self,
        request: tonic::Request<Streaming<ProcessingRequest>>,
    ) -> Result<tonic::Response<Answers>, Status> {
        let picker = Arc::clone(&self.0);
        let answers = request
            .into_inner()
            // Envoy's end of the stream ends it; so does a failed stream (a reset: nobody is
            // left to answer).
            .map_while(Result::ok)
            .filter_map(move |message| picker.answer(message));
        Ok(tonic::Response::new(Box::pin(answers)))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ext-proc-picker: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), String> {
    let picker = Picker::new(&args.backends).ok_or("no backends given")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let bound = listener.local_addr().map_err(|e| format!("listening socket: {e}"))?;
    // The bench reads this line to learn the port; stdout is flushed at the newline only when
    // it is a terminal, so flush.
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {bound}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }
    tonic::transport::Server::builder()
        .add_service(ExternalProcessorServer::new(Service(Arc::new(picker))))
        .serve_with_incoming(TcpListenerStream::new(listener))
        .await
        .map_err(|e| format!("serving on {bound}: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use envoy_types::pb::envoy::service::ext_proc::v3::{HttpBody, HttpHeaders, HttpTrailers};

    fn picker() -> Picker {
        Picker::new(&["127.0.0.1:8081".parse().unwrap(), "127.0.0.1:8082".parse().unwrap()])
            .unwrap()
    }

    fn message(request: Request) -> ProcessingRequest {
        ProcessingRequest { request: Some(request), ..ProcessingRequest::default() }
    }

    /// The steering header an answer sets, with its append action.
    fn steering(answer: &ProcessingResponse) -> (String, i32) {
        let Some(Response::RequestHeaders(HeadersResponse { response: Some(common) })) =
            &answer.response
        else {
            panic!("not a request headers answer: {answer:?}");
        };
        assert_eq!(common.status, 0, "CONTINUE");
        let mutation = common.header_mutation.as_ref().unwrap();
        let [option] = mutation.set_headers.as_slice() else { panic!("{mutation:?}") };
        let header = option.header.as_ref().unwrap();
        assert_eq!(header.key, STEERING_HEADER);
        assert!(header.value.is_empty(), "the value goes in raw_value");
        (String::from_utf8(header.raw_value.clone()).unwrap(), option.append_action)
    }

    #[test]
    fn request_headers_get_the_backends_in_turn_replacing_the_clients_header() {
        let p = picker();
        let picks: Vec<String> = (0..5)
            .map(|_| {
                let answer = p.answer(message(Request::RequestHeaders(HttpHeaders::default())));
                let (value, action) = steering(&answer.unwrap().unwrap());
                assert_eq!(action, HeaderAppendAction::OverwriteIfExistsOrAdd as i32);
                value
            })
            .collect();
        assert_eq!(
            picks,
            [
                "127.0.0.1:8081",
                "127.0.0.1:8082",
                "127.0.0.1:8081",
                "127.0.0.1:8082",
                "127.0.0.1:8081"
            ]
        );
    }

    #[test]
    fn every_other_message_is_answered_continue_in_kind() {
        let p = picker();
        let cont = || Some(CommonResponse::default());
        let cases = [
            (
                Request::ResponseHeaders(HttpHeaders::default()),
                Response::ResponseHeaders(HeadersResponse { response: cont() }),
            ),
            (
                Request::RequestBody(HttpBody::default()),
                Response::RequestBody(BodyResponse { response: cont() }),
            ),
            (
                Request::ResponseBody(HttpBody::default()),
                Response::ResponseBody(BodyResponse { response: cont() }),
            ),
            (
                Request::RequestTrailers(HttpTrailers::default()),
                Response::RequestTrailers(TrailersResponse { header_mutation: None }),
            ),
            (
                Request::ResponseTrailers(HttpTrailers::default()),
                Response::ResponseTrailers(TrailersResponse { header_mutation: None }),
            ),
        ];
        for (request, want) in cases {
            let answer = p.answer(message(request)).unwrap().unwrap();
            assert_eq!(answer.response, Some(want));
        }
        // Nothing else moved the round robin.
        let first = p.answer(message(Request::RequestHeaders(HttpHeaders::default())));
        assert_eq!(steering(&first.unwrap().unwrap()).0, "127.0.0.1:8081");
    }

    #[test]
    fn odd_messages_get_no_answer_or_an_error_never_a_panic() {
        let p = picker();
        let mut observed = message(Request::RequestHeaders(HttpHeaders::default()));
        observed.observability_mode = true;
        assert!(p.answer(observed).is_none());
        let empty = p.answer(ProcessingRequest::default()).unwrap().unwrap_err();
        assert_eq!(empty.code(), tonic::Code::InvalidArgument);
        assert!(Picker::new(&[]).is_none());
    }
}

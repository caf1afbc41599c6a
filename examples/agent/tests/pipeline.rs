//! The library pipeline end to end: logs come out, flows get their protocol, the threaded and single-threaded
//! pipelines agree; extra (plugin-like) parsers are accepted.

use fathom_agent::{run_pcap, Output, RunOptions};
use fathom_model::{Direction, FlowKey, L7Protocol, RequestLog};
use fathom_protocols::{
    Correlation, FlowParser, L7Parser, Limits, LogInfo, Message, MessageKind, ParseCtx, ParseError,
    Probe, ProbeInput,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn data(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")).join(name)
}

/// "Heads": HTTP/1 message heads (up to an empty line) from the client are requests, from the server responses.
/// Crude (bodies are skipped only when they hold no empty line), enough to drive the pipeline.
struct Heads;

impl L7Parser for Heads {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Custom("heads".into())
    }
    fn probe(&self, input: &ProbeInput<'_>) -> Probe {
        if input.payload.starts_with(b"GET ")
            || input.payload.starts_with(b"POST ")
            || input.payload.starts_with(b"HEAD ")
        {
            Probe::Yes
        } else {
            Probe::No
        }
    }
    fn new_flow(&self, _flow: &FlowKey, _limits: &Limits) -> Box<dyn FlowParser> {
        Box::new(HeadsFlow)
    }
}

struct HeadsFlow;

impl FlowParser for HeadsFlow {
    fn parse(
        &mut self,
        data: &[u8],
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Result<usize, ParseError> {
        let mut consumed = 0;
        while let Some(i) = data[consumed..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = consumed + i + 4;
            let head = &data[consumed..end];
            if head.starts_with(b"HTTP/") || ctx.direction == Direction::ClientToServer {
                let kind = if ctx.direction == Direction::ClientToServer {
                    MessageKind::Request
                } else {
                    MessageKind::Response
                };
                let word = head.split(|&b| b == b' ').next().unwrap_or_default();
                let info = LogInfo {
                    request_type: Some(String::from_utf8_lossy(word).into_owned()),
                    ..LogInfo::default()
                };
                out.push(
                    Message::new(
                        ctx.direction,
                        kind,
                        Correlation::Fifo,
                        ctx.pos(consumed),
                        ctx.pos(end),
                    )
                    .with_info(info),
                );
            }
            consumed = end;
        }
        if ctx.direction == Direction::ServerToClient
            && consumed == 0
            && !data.starts_with(b"HTTP/")
        {
            // A body: skip it.
            return Ok(data.len());
        }
        Ok(consumed)
    }
    fn on_gap(&mut self, _direction: Direction, _lost: u64) {}
}

fn run(single_thread: bool) -> (Vec<RequestLog>, Vec<fathom_model::FlowRecord>) {
    let options = RunOptions {
        single_thread,
        extra_parsers: vec![Arc::new(Heads)],
        ..RunOptions::default()
    };
    let (mut logs, mut flows) = (Vec::new(), Vec::new());
    let stats = run_pcap(&data("http1.pcap"), &options, |o| match o {
        Output::Log(l) => logs.push(l.clone()),
        Output::Flow(f) => flows.push(f.clone()),
        Output::BatchDone => {}
    })
    .unwrap();
    assert_eq!(stats.logs, logs.len() as u64);
    assert_eq!(stats.flows, flows.len() as u64);
    (logs, flows)
}

#[test]
fn logs_and_flow_protocols_through_the_pipeline() {
    // Built-in parsers first: the http1 parser claims these flows (the test parser would only see flows no
    // built-in parser wants).
    let (logs, flows) = run(false);
    // The manifest's ground truth for http1.pcap: 26 request logs on port 18080.
    assert_eq!(logs.len(), 26);
    assert!(logs
        .iter()
        .all(|l| l.l7_protocol.as_str() == "http1" && l.port_dst == 18080));
    assert!(logs.iter().all(|l| l.response_duration_us.is_some()));
    assert_eq!(flows.len(), 8);
    assert!(flows
        .iter()
        .all(|f| f.l7_protocol.as_deref() == Some("http1")));
    // The same with capture and parsing on one thread.
    let (logs1, flows1) = run(true);
    assert_eq!(logs1, logs);
    assert_eq!(flows1, flows);
    // And through the vector helpers.
    let (logs2, stats) = fathom_agent::logs_from_pcap(&data("http1.pcap")).unwrap();
    assert_eq!(logs2, logs);
    assert_eq!(stats.engine.logs, 26);
}

#!/usr/bin/env python3
"""A minimal OTLP/HTTP metrics receiver for fathom-metrics' tests.

Listens on 127.0.0.1 (port 0 = any), prints "PORT <n>" on stdout once ready, decodes every
`POST /v1/metrics` body as an `ExportMetricsServiceRequest` (protobuf, from the `opentelemetry-proto` PyPI
package), and appends one JSON line per data point to the output file:
  {"metric", "unit", "kind": "sum"|"summary"|"gauge"|..., "monotonic", "temporality", "attributes": {...},
   "resource": {...}, "value" | "count"+"sum"+"quantiles", "start_time_unix_nano", "time_unix_nano"}
Answers 200 with an empty ExportMetricsServiceResponse. Exits 3 when opentelemetry-proto is missing.

Usage: otlp_receiver.py OUT_FILE
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

try:
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
except ImportError:  # pragma: no cover
    print("MISSING opentelemetry-proto (pip install opentelemetry-proto)", flush=True)
    sys.exit(3)


def attrs(kvs):
    out = {}
    for kv in kvs:
        v = kv.value
        which = v.WhichOneof("value")
        out[kv.key] = getattr(v, which) if which else None
    return out


def points(req):
    for rm in req.resource_metrics:
        res = attrs(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                data = getattr(m, kind)
                for dp in data.data_points:
                    rec = {
                        "metric": m.name,
                        "unit": m.unit,
                        "kind": kind,
                        "attributes": attrs(dp.attributes),
                        "resource": res,
                        "scope": sm.scope.name,
                        "start_time_unix_nano": dp.start_time_unix_nano,
                        "time_unix_nano": dp.time_unix_nano,
                    }
                    if kind == "sum":
                        rec["monotonic"] = data.is_monotonic
                        rec["temporality"] = data.aggregation_temporality
                    if kind in ("sum", "gauge"):
                        rec["value"] = dp.as_int if dp.WhichOneof("value") == "as_int" else dp.as_double
                    elif kind == "summary":
                        rec["count"] = dp.count
                        rec["sum"] = dp.sum
                        rec["quantiles"] = {str(q.quantile): q.value for q in dp.quantile_values}
                    yield rec


class Handler(BaseHTTPRequestHandler):
    out_path = None

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/metrics" or self.headers.get("Content-Type") != "application/x-protobuf":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        req = metrics_service_pb2.ExportMetricsServiceRequest()
        try:
            req.ParseFromString(body)
        except Exception as e:  # a malformed body is the client's fault
            self.send_response(400)
            msg = str(e).encode()
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        with open(self.out_path, "a", encoding="utf-8") as f:
            for rec in points(req):
                f.write(json.dumps(rec, sort_keys=True) + "\n")
        resp = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(resp)))
        self.end_headers()
        self.wfile.write(resp)

    def log_message(self, *args):
        pass


def main():
    Handler.out_path = sys.argv[1]
    open(Handler.out_path, "w").close()
    server = HTTPServer(("127.0.0.1", 0), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

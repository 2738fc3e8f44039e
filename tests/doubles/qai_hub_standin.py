"""TEST DOUBLE: a stand-in for Qualcomm AI Hub's service (see README.md beside it), on 127.0.0.1 only.

The real `qai-hub` client (0.56.0) talks to it unchanged: protobuf over HTTP under /api/v1/, as
qai_hub/public_rest_api.py sends it, uploads to presigned URLs (a PUT per part with an ETag back
for models, a multipart form POST for datasets), the job states of JobStatus.State, a ProfileDetail
and output data as HDF5. What it answers comes from files written from the client's source and
documentation (replays/qai-hub-*.json). There is no phone: output data are the uploaded model run
by onnxruntime or LiteRT on this host, and the profile's timings are the replay's.

Scenarios (`StandIn.scenario`): ok, fail (every job ends FAILED with the replay's reason), stall
(jobs never leave MEASURING_PERFORMANCE / RUNNING_INFERENCE); `fail_named` fails only the jobs of
that name (edge-distill names a job by its artifact's label, e.g. "ort-int8"). With `log`, every job
created is appended to that file as one JSON line, when it is created: a test in another process
waits on it, and reads from it which jobs each run submitted.
"""

from __future__ import annotations

import email.parser
import hashlib
import io
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import h5py
from qai_hub import public_api_pb2 as pb
from qai_hub.util.dataset_entries_converters import dataset_entries_to_h5, h5_to_dataset_entries

HERE = Path(__file__).parent
DEVICES = json.loads((HERE / "replays" / "qai-hub-devices.json").read_text())["devices"]
PROFILE = json.loads((HERE / "replays" / "qai-hub-profile.json").read_text())
CREATED, SUCCESS, FAILED, PROVISIONING, MEASURING, RUNNING = 1, 10, 30, 60, 70, 80  # JobState numbers


class StandIn:
    """The service: start() binds 127.0.0.1 on a free port; stop() (or leaving `with`) shuts it down."""

    def __init__(self, token: str, scenario: str = "ok", fail_named: str = "", log: Path | None = None):
        self.token, self.scenario, self.fail_named, self.log = token, scenario, fail_named, log
        self.models: dict[str, bytes] = {}
        self.datasets: dict[str, bytes] = {}
        self.jobs: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every call
        self.bad_tokens = 0
        self.most_open = 0  # the most jobs submitted and not yet finished at one time
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> StandIn:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *_) -> None:
        self.stop()

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):07d}"

    def submitted(self) -> list[dict]:
        return list(self.jobs.values())

    # --- the API ---
    def devices(self, query: dict) -> pb.DeviceList:
        name, attrs = query.get("name", [""])[0], query.get("attributes", [])
        found = [d for d in DEVICES if (not name or d["name"] == name) and set(attrs) <= set(d["attributes"])]
        if query.get("select", ["False"])[0] == "True":
            found = found[:1]
        return pb.DeviceList(devices=[pb.Device(name=d["name"], os=d["os"], attributes=d["attributes"])
                                      for d in found], total_query_count=len(found))

    def create_job(self, body: bytes) -> pb.CreateUpdateResponse:
        job = pb.Job()
        job.ParseFromString(body)
        spec = job.inference_job
        job_id = self.new_id("j")
        self.most_open = max(self.most_open, 1 + sum(1 for j in self.jobs.values() if j["polls"] < 4))
        self.jobs[job_id] = {"pb": spec, "polls": 0, "model": spec.model.model_id,
                             "dataset": spec.dataset.dataset_id, "profile": spec.is_profiling_on,
                             "device": spec.device.name, "options": spec.options, "name": spec.name}
        if self.log:
            entry = {"id": job_id, "name": spec.name, "device": spec.device.name, "profile": spec.is_profiling_on,
                     "model_sha256": hashlib.sha256(self.models.get(spec.model.model_id, b"")).hexdigest()}
            with self._lock, self.log.open("a") as log:
                log.write(json.dumps(entry) + "\n")
        return pb.CreateUpdateResponse(id=job_id)

    def job(self, job_id: str) -> pb.Job:
        record = self.jobs[job_id]
        record["polls"] += 1
        working = MEASURING if record["profile"] else RUNNING
        fails = self.scenario == "fail" or record["name"] == self.fail_named
        states = [CREATED, PROVISIONING, working, FAILED if fails else SUCCESS]
        state = working if self.scenario == "stall" else states[min(record["polls"] - 1, 3)]
        spec = pb.InferenceJob()
        spec.CopyFrom(record["pb"])
        spec.inference_job_id, spec.job_state = job_id, state
        if state == FAILED:
            spec.failure_reason = PROFILE["failure_reason"]
        return pb.Job(inference_job=spec, hub_version="aihub-2026.11.0")

    def result(self, job_id: str) -> pb.JobResult:
        record = self.jobs[job_id]
        outcome = pb.InferenceJobResult(inference_job_id=job_id)
        if record["profile"]:
            outcome.detail.CopyFrom(self.profile_detail(self.models[record["model"]]))
        if record["dataset"]:
            with self._lock:  # computed once, before its id is given out: two clients may ask at once
                if "output" not in record:
                    output = run_model(self.models[record["model"]], self.datasets[record["dataset"]])
                    record["output"] = self.new_id("d")
                    self.datasets[record["output"]] = output
            outcome.output_dataset_id = record["output"]
        return pb.JobResult(inference_job_result=outcome)

    def profile_detail(self, model: bytes) -> pb.ProfileDetail:
        fields = {k: v for k, v in PROFILE.items() if not k.startswith("_") and k != "failure_reason"}
        detail = pb.ProfileDetail()
        for key in ("execution_memory", "cold_load_memory"):
            usage = fields.pop(key)
            getattr(detail, key).CopyFrom(pb.ProfileDetail.MemoryUsage(
                increase=pb.Range(**usage["increase"]), peak=pb.Range(**usage["peak"])))
        for key, value in fields.items():
            getattr(detail, key).extend(value) if isinstance(value, list) else setattr(detail, key, value)
        for name, kind, unit in layers(model):
            detail.layer_details.add(name=name, layer_type_name=kind, compute_unit=unit)
        return detail


def layers(model: bytes) -> list[tuple[str, str, int]]:
    """One row per node of the uploaded model: convolutions and matmuls on the NPU, the rest on the CPU."""
    npu, cpu = pb.ComputeUnit.Value("COMPUTE_UNIT_NPU"), pb.ComputeUnit.Value("COMPUTE_UNIT_CPU")
    if model[4:8] == b"TFL3":
        from ai_edge_litert.interpreter import Interpreter

        ops = [d["op_name"] for d in Interpreter(model_content=model)._get_ops_details()]
        return [(f"{op}:{i}", op, npu if op in ("CONV_2D", "FULLY_CONNECTED") else cpu) for i, op in enumerate(ops)]
    import onnx

    graph = onnx.load_from_string(model).graph
    return [(n.name or f"{n.op_type}:{i}", n.op_type, npu if n.op_type in ("Conv", "MatMul", "Gemm") else cpu)
            for i, n in enumerate(graph.node)]


def run_model(model: bytes, inputs_h5: bytes) -> bytes:
    """What the phone would return: each sample of the uploaded dataset through the model, as HDF5."""
    with h5py.File(io.BytesIO(inputs_h5), "r") as f:
        entries = h5_to_dataset_entries(f)
    samples = len(next(iter(entries.values())))
    if model[4:8] == b"TFL3":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_content=model)
        runner = interpreter.get_signature_runner()
        outs = [runner(**{k: v[i] for k, v in zip(runner.get_input_details(), entries.values())})
                for i in range(samples)]
        names = list(outs[0])
        result = {n: [o[n] for o in outs] for n in names}
    else:
        import onnxruntime as ort

        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        feeds = [dict(zip([i.name for i in session.get_inputs()], (v[i] for v in entries.values())))
                 for i in range(samples)]
        outs = [session.run(None, f) for f in feeds]
        result = {n: [o[k] for o in outs] for k, n in enumerate(names)}
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        dataset_entries_to_h5(result, f)
    return buffer.getvalue()


def _form_file(headers, body: bytes) -> bytes:
    """The file field of a multipart/form-data POST (the client's dataset upload)."""
    message = email.parser.BytesParser().parsebytes(
        b"Content-Type: " + headers["Content-Type"].encode() + b"\r\n\r\n" + body)
    return next(part.get_payload(decode=True) for part in message.get_payload()
                if part.get_param("name", header="content-disposition") == "file")


def _handler(service: StandIn):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):  # quiet: the tests read service.requests
            pass

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body: bytes = b"", content_type="application/x-protobuf", extra=None):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _route(self, method: str) -> None:
            url = urlparse(self.path)
            service.requests.append((method, url.path))
            body = self._body() if method in ("POST", "PUT", "PATCH") else b""
            if url.path.startswith("/s3/"):  # the presigned-URL side: no API token, as S3's
                return self._storage(method, url.path, body)
            if self.headers.get("Authorization") != f"token {service.token}":
                service.bad_tokens += 1
                return self._send(401, b'{"detail": "Invalid token."}', "application/json")
            parts = [p for p in url.path.removeprefix("/api/v1/").split("/") if p]
            answer = self._api(method, parts, parse_qs(url.query), body)
            if answer is None:
                return self._send(404, b"Not found.", "text/plain")
            self._send(200, answer.SerializeToString())

        def _api(self, method: str, parts: list[str], query: dict, body: bytes):
            s = service
            match method, parts:
                case "GET", ["devices"]:
                    return s.devices(query)
                case "POST", ["models" | "datasets" as kind] | ["projects", _, "models" | "datasets" as kind]:
                    return pb.CreateUpdateResponse(id=s.new_id(kind[0]))
                case "GET", ["models", model_id, "multipart_upload"]:
                    return pb.FileUploadResponse(multipart_url=pb.FileMultipartUploadURL(
                        urls=[f"{s.url}/s3/models/{model_id}"], upload_id=f"up-{model_id}", max_part_size=1 << 30))
                case "POST", ["models", model_id, "multipart_upload"]:
                    return pb.CreateUpdateResponse(id=model_id)
                case "PATCH", ["datasets", dataset_id]:
                    return pb.CreateUpdateResponse(id=dataset_id)
                case "GET", ["datasets", dataset_id, "upload_url"]:
                    return pb.FileUploadResponse(url=pb.FileUploadURL(url=f"{s.url}/s3/datasets/{dataset_id}",
                                                                      file_field_name="file"))
                case "POST", ["jobs"] | ["projects", _, "jobs"]:
                    return s.create_job(body)
                case "GET", ["jobs", job_id] if job_id in s.jobs:
                    return s.job(job_id)
                case "GET", ["jobs", job_id, "result"] if job_id in s.jobs:
                    return s.result(job_id)
                case "GET", ["datasets", dataset_id] if dataset_id in s.datasets:
                    return pb.Dataset(dataset_id=dataset_id, name=f"dataset-{dataset_id}", file_upload_complete=True)
                case "GET", ["datasets", dataset_id, "download_data"] if dataset_id in s.datasets:
                    return pb.FileDownloadResponse(url=pb.FileDownloadURL(
                        url=f"{s.url}/s3/datasets/{dataset_id}", filename=f"dataset-{dataset_id}.h5"))
            return None

        def _storage(self, method: str, path: str, body: bytes) -> None:
            _, _, kind, key = path.split("/", 3)
            store = service.models if kind == "models" else service.datasets
            if method == "PUT":
                store[key] = body
                return self._send(200, b"", "text/plain", {"ETag": f'"etag-{key}"'})
            if method == "POST":
                store[key] = _form_file(self.headers, body)
                return self._send(204, b"", "text/plain")
            if key not in store:
                return self._send(404, b"NoSuchKey", "text/plain")
            self._send(200, store[key], "application/octet-stream")

        def do_GET(self):
            self._route("GET")

        def do_POST(self):
            self._route("POST")

        def do_PUT(self):
            self._route("PUT")

        def do_PATCH(self):
            self._route("PATCH")

    return Handler

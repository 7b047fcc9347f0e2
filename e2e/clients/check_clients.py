#!/usr/bin/env python3
"""Calls the Iris model with the common Open Inference Protocol v2 clients and checks the answers.

Run it with the venv from setup.sh (run with another Python that lacks the clients, it makes
that venv with setup.sh and re-executes itself there):

    VENV=$(e2e/clients/setup.sh)
    "$VENV/bin/python" e2e/clients/check_clients.py --http 127.0.0.1:5001 --grpc 127.0.0.1:8081 \
        --model iris --expected expected.json
    "$VENV/bin/python" e2e/clients/check_clients.py --http 127.0.0.1:5001 --model iris \
        --expected-from-rest http://127.0.0.1:5001          # expectations from the server itself

Clients and modes (one output line each: `PASS <client> <mode> 150/150` or `FAIL ...`):
  tritonclient.http   binary              binary tensor extension, inputs and outputs (its default)
  tritonclient.http   json                binary_data=False on inputs and outputs, no Content-Type
                                          header (tritonclient sends none)
  tritonclient.http   json+content-type   the same with Content-Type: application/json added
  tritonclient.http   json fp64           FP64 input tensor
  tritonclient.http   json per-row        150 requests of one row
  tritonclient.http   metadata            server ready, model ready, model metadata lists the outputs
  tritonclient.grpc   raw                 raw_input_contents (all tritonclient.grpc can send)
  tritonclient.grpc   typed               contents.fp32_contents, built with tritonclient's own
                                          generated service_pb2 (tritonclient has no API for it)
  tritonclient.grpc   raw per-row         150 requests of one row
  tritonclient.grpc   metadata            as for http
  kserve.InferenceRESTClient  json        kserve SDK, protocol v2, JSON body (binary_data=False)
  kserve.InferenceRESTClient  binary      binary inputs, binary outputs requested
  kserve.InferenceGRPCClient  raw         InferInput.set_data_from_numpy (binary) -> raw_input_contents
  kserve.InferenceGRPCClient  typed       set_data_from_numpy(binary_data=False) -> typed contents

The batch is all 150 rows as one [150,4] FP32 tensor unless the mode says otherwise. Outputs
checked: `predict` (INT64 [N]) and `label` (BYTES [N]) against the expectations, `probabilities`
(FP64 [N,k]): rows sum to 1, argmax = predict, and equal to the expected ones within --prob-tol
when the expectations carry them.

--expected FILE: a JSON list (or {"rows": [...]}) of 150 objects
    {"features": [4 floats], "predict": int, "label": str, "probabilities": [k floats] (optional)}
The rows sent are the features of that file; without --expected they are e2e/clients/iris.json
(made from iris-model/data/iris.csv by `check_clients.py --write-rows`).

Exit status: 0 when every selected check passed (SKIP lines do not fail), 1 otherwise.
"""

import argparse
import asyncio
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ARGV = sys.argv[1:]  # before main() hides them from `import kserve`
ROWS_JSON = os.path.join(HERE, "iris.json")
IRIS_CSV = os.path.join(HERE, "..", "..", "iris-model", "data", "iris.csv")
# The outputs requested and checked; --outputs narrows them (e.g. `predict` alone to try the
# clients against another OIP server, such as MLServer, whose outputs are named otherwise).
OUTPUTS = ("predict", "label", "probabilities")
# --ca: the CA file the server's certificate chains to (TLS on both ports); the bearer token,
# when the model asks for one, comes from the environment variable IRIS_TOKEN (never argv).
TLS_CA = None


def auth_headers(extra=None, key="Authorization"):
    """HTTP headers (or, with key="authorization", gRPC metadata, whose keys are lowercase)."""
    headers = dict(extra or {})
    token = os.environ.get("IRIS_TOKEN")
    if token:
        headers[key] = f"Bearer {token}"
    return headers or None


# --- data -----------------------------------------------------------------------------------

def write_rows(csv_path, out_path):
    with open(csv_path, newline="") as f:
        rows = [r for r in csv.DictReader(f)]
    doc = {
        "source": "iris-model/data/iris.csv",
        "columns": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
        "rows": [[float(r[c]) for c in ("sepal_length", "sepal_width", "petal_length", "petal_width")]
                 for r in rows],
        "species": [r["species"] for r in rows],
    }
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(rows)} rows to {out_path}")


def load_rows():
    with open(ROWS_JSON) as f:
        return json.load(f)["rows"]


def load_expected(path):
    with open(path) as f:
        doc = json.load(f)
    rows = doc["rows"] if isinstance(doc, dict) else doc
    for i, r in enumerate(rows):
        if len(r.get("features", [])) != 4 or any(k not in r for k in OUTPUTS if k != "probabilities"):
            raise SystemExit(f"{path}: row {i} needs features (4 floats), " + " and ".join(OUTPUTS))
    return rows


def expected_from_rest(url, model, rows, timeout):
    """Expectations from the server's own JSON route: one FP32 [N,4] batch, plain JSON."""
    if "/v2/" not in url:
        url = url.rstrip("/") + f"/v2/models/{model}/infer"
    if not url.startswith("http"):
        url = "http://" + url
    body = {"inputs": [{"name": "input-0", "shape": [len(rows), 4], "datatype": "FP32",
                        "data": [v for r in rows for v in r]}]}
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    body["outputs"] = [{"name": name} for name in OUTPUTS]
    req.data = json.dumps(body).encode()
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        out = {o["name"]: o for o in json.load(resp)["outputs"]}
    expected = [{"features": r} for r in rows]
    for name in OUTPUTS:
        if name not in out:
            raise SystemExit(f"{url}: no output {name!r} in the reference answer (got {sorted(out)})")
        data = out[name]["data"]
        k = len(data) // len(rows)
        for i, e in enumerate(expected):
            e[name] = data[i] if name != "probabilities" else data[i * k:(i + 1) * k]
    return expected


# --- checking -------------------------------------------------------------------------------

def as_str(v):
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if hasattr(v, "item") and not isinstance(v, str):
        v = v.item()
        return v.decode("utf-8") if isinstance(v, bytes) else str(v)
    return str(v)


def compare(got, expected, tol):
    """got: {"predict": [N] ints, "label": [N] strs, "probabilities": [N][k] floats}.
    Returns (matching rows, first mismatch text or None)."""
    n = len(expected)
    for name in OUTPUTS:
        if got.get(name) is None:
            return 0, f"output {name!r} missing"
        if len(got[name]) != n:
            return 0, f"output {name!r} has {len(got[name])} rows, expected {n}"
    ok, first = 0, None
    for i, e in enumerate(expected):
        why = None
        p = int(got["predict"][i]) if "predict" in OUTPUTS else None
        if p is not None and p != int(e["predict"]):
            why = f"predict {p} != {e['predict']}"
        if why is None and "label" in OUTPUTS and as_str(got["label"][i]) != e["label"]:
            why = f"label {as_str(got['label'][i])!r} != {e['label']!r}"
        if why is None and "probabilities" in OUTPUTS:
            probs = [float(x) for x in got["probabilities"][i]]
            if abs(sum(probs) - 1.0) > 1e-6:
                why = f"probabilities {probs} do not sum to 1"
            elif p is not None and max(range(len(probs)), key=probs.__getitem__) != p:
                why = f"argmax of probabilities {probs} != predict {p}"
            elif e.get("probabilities") is not None and (
                    len(probs) != len(e["probabilities"])
                    or any(abs(a - b) > tol for a, b in zip(probs, e["probabilities"]))):
                why = f"probabilities {probs} != {e['probabilities']} (tol {tol})"
        if why is None:
            ok += 1
        elif first is None:
            first = f"row {i} {e['features']}: {why}"
    return ok, first


def rows_of(arr, n):
    """A flat or [N,k] sequence/ndarray as a list of N rows."""
    try:
        import numpy as np
        a = np.asarray(arr)
        if a.dtype == object:
            return list(a.reshape(-1))
        return a.reshape(n, -1).tolist() if a.size and a.size % n == 0 and a.size != n else a.reshape(-1).tolist()
    except ImportError:  # pragma: no cover - numpy comes with both clients
        return list(arr)


def normalise(outputs, n):
    """{name: array-like} -> {name: per-row lists} for the three outputs."""
    got = {}
    for name in OUTPUTS:
        v = outputs.get(name)
        if v is None:
            got[name] = None
            continue
        if name == "probabilities":
            import numpy as np
            a = np.asarray(v, dtype=np.float64)
            got[name] = a.reshape(n, -1).tolist() if a.size else []
        else:
            got[name] = rows_of(v, n)
    return got


# --- tritonclient -------------------------------------------------------------------------

def triton_http(addr, model, rows, timeout, binary, dtype="FP32", content_type=False):
    import numpy as np
    import tritonclient.http as httpclient
    np_dtype = np.float32 if dtype == "FP32" else np.float64
    x = np.asarray(rows, dtype=np_dtype)
    tls = {}
    if TLS_CA:
        import gevent.ssl
        tls = {"ssl": True,
               "ssl_context_factory": lambda: gevent.ssl.create_default_context(cafile=TLS_CA)}
    client = httpclient.InferenceServerClient(addr, connection_timeout=timeout, network_timeout=timeout,
                                              **tls)
    try:
        inp = httpclient.InferInput("input-0", list(x.shape), dtype)
        inp.set_data_from_numpy(x, binary_data=binary)
        outs = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in OUTPUTS]
        headers = auth_headers({"Content-Type": "application/json"} if content_type else None)
        res = client.infer(model, [inp], outputs=outs, headers=headers)
        return normalise({name: res.as_numpy(name) for name in OUTPUTS}, len(rows))
    finally:
        client.close()


def triton_grpc_raw(addr, model, rows, timeout):
    import numpy as np
    import tritonclient.grpc as grpcclient
    x = np.asarray(rows, dtype=np.float32)
    tls = {"ssl": True, "root_certificates": TLS_CA} if TLS_CA else {}
    client = grpcclient.InferenceServerClient(addr, **tls)
    try:
        inp = grpcclient.InferInput("input-0", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)  # always raw_input_contents
        outs = [grpcclient.InferRequestedOutput(name) for name in OUTPUTS]
        res = client.infer(model, [inp], outputs=outs, client_timeout=timeout,
                           headers=auth_headers(key="authorization"))
        got = {}
        for name in OUTPUTS:
            a = res.as_numpy(name)
            # tritonclient.grpc decodes non-BYTES outputs only from raw_output_contents (as
            # Triton sends them); typed contents come back as an empty array.
            if a is not None and a.size == 0:
                raise AssertionError(f"output {name!r} came back empty in tritonclient.grpc: the server "
                                     "answered with typed contents, tritonclient.grpc reads only "
                                     "raw_output_contents for non-BYTES tensors")
            got[name] = a
        return normalise(got, len(rows))
    finally:
        client.close()


def grpc_outputs(resp):
    """Outputs of a ModelInferResponse, raw or typed, as {name: list}."""
    import numpy as np
    from tritonclient.utils import deserialize_bytes_tensor
    out = {}
    for i, o in enumerate(resp.outputs):
        if i < len(resp.raw_output_contents):
            raw = resp.raw_output_contents[i]
            if o.datatype == "BYTES":
                out[o.name] = list(deserialize_bytes_tensor(raw))
            else:
                dt = {"INT64": np.int64, "FP64": np.float64, "FP32": np.float32, "INT32": np.int32}[o.datatype]
                out[o.name] = np.frombuffer(raw, dtype=dt)
        else:
            c = o.contents
            out[o.name] = {"BYTES": c.bytes_contents, "INT64": c.int64_contents, "FP64": c.fp64_contents,
                           "FP32": c.fp32_contents, "INT32": c.int_contents}[o.datatype]
            out[o.name] = list(out[o.name])
    return out


def triton_grpc_typed(addr, model, rows, timeout):
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc
    with grpc.insecure_channel(addr) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        req = service_pb2.ModelInferRequest(model_name=model)
        inp = req.inputs.add()
        inp.name, inp.datatype = "input-0", "FP32"
        inp.shape.extend([len(rows), 4])
        inp.contents.fp32_contents.extend(v for r in rows for v in r)
        for name in OUTPUTS:
            req.outputs.add().name = name
        resp = stub.ModelInfer(req, timeout=timeout)
        return normalise(grpc_outputs(resp), len(rows))


def triton_metadata(kind, addr, model, timeout):
    if kind == "http":
        import tritonclient.http as client_mod
        client = client_mod.InferenceServerClient(addr, connection_timeout=timeout, network_timeout=timeout)
    else:
        import tritonclient.grpc as client_mod
        client = client_mod.InferenceServerClient(addr)
    try:
        kw = {} if kind == "http" else {"client_timeout": timeout}
        if not client.is_server_live(**kw):
            raise AssertionError("server not live")
        if not client.is_server_ready(**kw):
            raise AssertionError("server not ready")
        if not client.is_model_ready(model, **kw):
            raise AssertionError(f"model {model} not ready")
        if kind == "http":
            md = client.get_model_metadata(model)
            names = {o["name"]: o["datatype"] for o in md["outputs"]}
            versions = md.get("versions") or []
        else:
            md = client.get_model_metadata(model, client_timeout=timeout)
            names = {o.name: o.datatype for o in md.outputs}
            versions = list(md.versions)
        want = {k: v for k, v in {"predict": "INT64", "label": "BYTES", "probabilities": "FP64"}.items()
                if k in OUTPUTS}
        if any(names.get(k) != v for k, v in want.items()):
            raise AssertionError(f"metadata outputs {names}, expected {want}")
        return f"versions {versions}"
    finally:
        client.close()


# --- kserve SDK -----------------------------------------------------------------------------

def quiet_kserve():
    """The SDK logs every failed call with its traceback; the check prints its own line."""
    import logging
    if "--verbose" not in ARGV:
        logging.getLogger("kserve").setLevel(logging.CRITICAL)


def kserve_outputs(res, n):
    got = {}
    for o in res.outputs:
        got[o.name] = o.as_numpy()
    return normalise(got, n)


async def _kserve_rest(addr, model, rows, timeout, binary):
    import numpy as np
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
    from kserve.protocol.infer_type import RequestedOutput
    quiet_kserve()
    x = np.asarray(rows, dtype=np.float32)
    inp = InferInput("input-0", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outs = [RequestedOutput(name, parameters={"binary_data": binary}) for name in OUTPUTS]
    req = InferRequest(model_name=model, infer_inputs=[inp], request_outputs=outs)
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=timeout, retries=0))
    try:
        res = await client.infer(f"http://{addr}", req, model_name=model)
    finally:
        await client.close()
    return kserve_outputs(res, len(rows))


async def _kserve_grpc(addr, model, rows, timeout, raw):
    import numpy as np
    from kserve import InferenceGRPCClient, InferInput, InferRequest
    quiet_kserve()
    x = np.asarray(rows, dtype=np.float32)
    inp = InferInput("input-0", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=raw)
    req = InferRequest(model_name=model, infer_inputs=[inp])
    client = InferenceGRPCClient(addr, timeout=timeout, retries=0)
    try:
        res = await client.infer(req)
    finally:
        await client.close()
    return kserve_outputs(res, len(rows))


def kserve_rest(addr, model, rows, timeout, binary):
    return asyncio.run(_kserve_rest(addr, model, rows, timeout, binary))


def kserve_grpc(addr, model, rows, timeout, raw):
    return asyncio.run(_kserve_grpc(addr, model, rows, timeout, raw))


# --- driver -----------------------------------------------------------------------------------

def per_row(fn):
    """A call on N rows made as N one-row calls, outputs concatenated."""
    def call(addr, model, rows, timeout):
        got = {name: [] for name in OUTPUTS}
        for r in rows:
            one = fn(addr, model, [r], timeout)
            for name in OUTPUTS:
                if one.get(name) is None:
                    got[name] = None
                elif got[name] is not None:
                    got[name].extend(one[name])
        return got
    return call


def checks():
    """(client, mode, protocol, function(addr, model, rows, timeout) -> outputs, or "metadata")."""
    return [
        ("tritonclient.http", "binary", "http", lambda a, m, r, t: triton_http(a, m, r, t, True)),
        ("tritonclient.http", "json", "http", lambda a, m, r, t: triton_http(a, m, r, t, False)),
        ("tritonclient.http", "json+content-type", "http",
         lambda a, m, r, t: triton_http(a, m, r, t, False, content_type=True)),
        ("tritonclient.http", "json fp64", "http", lambda a, m, r, t: triton_http(a, m, r, t, False, "FP64")),
        ("tritonclient.http", "json per-row", "http",
         per_row(lambda a, m, r, t: triton_http(a, m, r, t, False))),
        ("tritonclient.http", "metadata", "http", "metadata"),
        ("tritonclient.grpc", "raw", "grpc", triton_grpc_raw),
        ("tritonclient.grpc", "typed", "grpc", triton_grpc_typed),
        ("tritonclient.grpc", "raw per-row", "grpc", per_row(triton_grpc_raw)),
        ("tritonclient.grpc", "metadata", "grpc", "metadata"),
        ("kserve.InferenceRESTClient", "json", "http", lambda a, m, r, t: kserve_rest(a, m, r, t, False)),
        ("kserve.InferenceRESTClient", "binary", "http", lambda a, m, r, t: kserve_rest(a, m, r, t, True)),
        ("kserve.InferenceGRPCClient", "raw", "grpc", lambda a, m, r, t: kserve_grpc(a, m, r, t, True)),
        ("kserve.InferenceGRPCClient", "typed", "grpc", lambda a, m, r, t: kserve_grpc(a, m, r, t, False)),
    ]


def short(e):
    text = f"{type(e).__name__}: {e}"
    text = re.sub(r"\s+", " ", text)
    return text[:400]


# tritonclient.grpc and the kserve SDK each register their own generated copy of the OIP
# protos (package `inference`) in protobuf's default descriptor pool, and the second import
# fails ("duplicate symbol 'inference.ServerLiveRequest'"). So each family runs in a process
# of its own: the parent resolves the expectations once and starts one child per family.
FAMILIES = ("tritonclient", "kserve")


def run_families(args, expected):
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    failed_children = 0
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="expected-") as f:
        json.dump(expected, f)
        f.flush()
        passthrough = [a for a in ("--http", "--grpc", "--model", "--only", "--timeout", "--prob-tol", "--outputs",
                                   "--ca")
                       if getattr(args, a[2:].replace("-", "_")) is not None]
        for family in FAMILIES:
            cmd = [sys.executable, os.path.abspath(__file__), "--expected", f.name, "--family", family]
            for a in passthrough:
                cmd += [a, str(getattr(args, a[2:].replace("-", "_")))]
            if args.verbose:
                cmd.append("--verbose")
            # Bounded: every request has --timeout; 150 per-row requests per mode at most.
            limit = 60 + 4 * 150 * args.timeout
            try:
                proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=limit)
                out, rc = proc.stdout, proc.returncode
            except subprocess.TimeoutExpired as e:
                out, rc = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), -1
                out += f"FAIL {family} checks: no answer within {limit:.0f} s\n"
            for line in out.splitlines():
                if line.startswith("clients:"):
                    continue
                print(line, flush=True)
                word = line.split(" ", 1)[0]
                if word in counts:
                    counts[word] += 1
            if rc != 0 and not re.search(r"^FAIL ", out, re.M):
                print(f"FAIL {family} checks: exit status {rc}", flush=True)
                failed_children += 1
    failed = counts["FAIL"] + failed_children
    print(f"clients: {counts['PASS']} passed, {failed} failed, {counts['SKIP']} skipped", flush=True)
    return 1 if failed else 0


def ensure_venv():
    """Run under the kit's venv: with the clients missing, make it (setup.sh) and re-exec there."""
    import importlib.util
    if all(importlib.util.find_spec(m) for m in ("numpy", "tritonclient", "kserve")):
        return
    if os.environ.get("CHECK_CLIENTS_REEXEC"):
        raise SystemExit("check_clients.py: the clients are still missing in " + sys.executable)
    venv = subprocess.run([os.path.join(HERE, "setup.sh")], stdout=subprocess.PIPE, text=True,
                          check=True, timeout=1800).stdout.strip().splitlines()[-1]
    python = os.path.join(venv, "bin", "python")
    os.environ["CHECK_CLIENTS_REEXEC"] = "1"
    os.execv(python, [python, os.path.abspath(__file__)] + ARGV)


def main():
    global OUTPUTS, TLS_CA
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--http", help="host:port of the REST endpoint (OIP v2 over HTTP)")
    ap.add_argument("--grpc", help="host:port of the gRPC endpoint (inference.GRPCInferenceService)")
    ap.add_argument("--model", default="iris")
    ap.add_argument("--expected", help="JSON file of expected answers (see above)")
    ap.add_argument("--expected-from-rest", metavar="URL",
                    help="take the expectations from the server's JSON route (http://host:port or the infer URL)")
    ap.add_argument("--only", metavar="REGEX", help="run only the checks whose 'client mode' matches")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    ap.add_argument("--prob-tol", type=float, default=1e-5,
                    help="absolute tolerance on probabilities against the expectations (default 1e-5)")
    ap.add_argument("--outputs", default=",".join(OUTPUTS),
                    help="comma-separated outputs to request and check (default: %(default)s)")
    ap.add_argument("--ca", metavar="FILE",
                    help="TLS on both ports: the CA file to trust (tritonclient's ssl=True); "
                         "a bearer token is taken from $IRIS_TOKEN")
    ap.add_argument("--verbose", action="store_true", help="print the traceback of failures")
    ap.add_argument("--family", choices=FAMILIES, help=argparse.SUPPRESS)
    ap.add_argument("--write-rows", action="store_true",
                    help=f"regenerate {os.path.relpath(ROWS_JSON)} from iris-model/data/iris.csv and exit")
    args = ap.parse_args()
    # `import kserve` parses sys.argv for its model server flags (and takes --http for
    # --http_port): hide ours from it.
    sys.argv = sys.argv[:1]
    TLS_CA = args.ca
    OUTPUTS = tuple(o for o in args.outputs.split(",") if o)
    if not OUTPUTS or any(o not in ("predict", "label", "probabilities") for o in OUTPUTS):
        ap.error("--outputs: a comma-separated subset of predict,label,probabilities")

    if args.write_rows:
        write_rows(IRIS_CSV, ROWS_JSON)
        return 0
    ensure_venv()
    if not args.http and not args.grpc:
        ap.error("give --http and/or --grpc")
    if args.expected:
        expected = load_expected(args.expected)
    elif args.expected_from_rest:
        expected = expected_from_rest(args.expected_from_rest, args.model, load_rows(), args.timeout)
    else:
        ap.error("give --expected FILE or --expected-from-rest URL")
    if args.family is None:
        return run_families(args, expected)
    rows = [list(map(float, e["features"])) for e in expected]
    n = len(rows)

    failed = passed = skipped = 0
    for client, mode, proto, fn in checks():
        label = f"{client} {mode}"
        if not client.startswith(args.family):
            continue
        if args.only and not re.search(args.only, label):
            continue
        addr = args.http if proto == "http" else args.grpc
        if not addr:
            print(f"SKIP {label} (no --{proto})", flush=True)
            skipped += 1
            continue
        t0 = time.monotonic()
        try:
            if fn == "metadata":
                note = triton_metadata(proto, addr, args.model, args.timeout)
                print(f"PASS {label} ({note}, {time.monotonic() - t0:.2f} s)", flush=True)
                passed += 1
                continue
            got = fn(addr, args.model, rows, args.timeout)
            ok, first = compare(got, expected, args.prob_tol)
        except Exception as e:  # noqa: BLE001 - every client error is a failed check
            if args.verbose:
                traceback.print_exc()
            count = "" if fn == "metadata" else f" 0/{n}"
            print(f"FAIL {label}{count} error: {short(e)}", flush=True)
            failed += 1
            continue
        dt = time.monotonic() - t0
        if ok == n and first is None:
            print(f"PASS {label} {ok}/{n} ({dt:.2f} s)", flush=True)
            passed += 1
        else:
            print(f"FAIL {label} {ok}/{n} first mismatch: {first}", flush=True)
            failed += 1
    print(f"clients: {passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Sends each row once per tritonclient mode, one row a request, for the payload-log e2e test
(e2e/tests/payload_log.rs), and prints one JSON line per request: the client, the row sent
(as FP32 values, what the server received) and the label answered.

    "$VENV/bin/python" e2e/clients/payload_log_clients.py --http 127.0.0.1:5001 \
        --grpc 127.0.0.1:8081 --model iris --rows '[[5.1,3.5,1.4,0.2]]'

Modes: tritonclient.http binary (the binary tensor extension, inputs and outputs),
tritonclient.http json (binary_data=False), tritonclient.grpc (raw_input_contents).
Exit status 1 on any failed request.
"""

import argparse
import json
import sys


def http_call(addr, model, row, binary):
    import numpy as np
    import tritonclient.http as httpclient
    x = np.asarray([row], dtype=np.float32)
    client = httpclient.InferenceServerClient(addr, connection_timeout=30, network_timeout=30)
    try:
        inp = httpclient.InferInput("input-0", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        out = httpclient.InferRequestedOutput("label", binary_data=binary)
        res = client.infer(model, [inp], outputs=[out])
        return x[0].tolist(), as_text(res.as_numpy("label")[0])
    finally:
        client.close()


def grpc_call(addr, model, row):
    import numpy as np
    import tritonclient.grpc as grpcclient
    x = np.asarray([row], dtype=np.float32)
    client = grpcclient.InferenceServerClient(addr)
    try:
        inp = grpcclient.InferInput("input-0", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        out = grpcclient.InferRequestedOutput("label")
        res = client.infer(model, [inp], outputs=[out], client_timeout=30)
        return x[0].tolist(), as_text(res.as_numpy("label")[0])
    finally:
        client.close()


def as_text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--http", required=True)
    p.add_argument("--grpc", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--rows", required=True, help="JSON list of [4 floats]")
    a = p.parse_args()
    calls = [
        ("tritonclient.http binary", lambda r: http_call(a.http, a.model, r, True)),
        ("tritonclient.http json", lambda r: http_call(a.http, a.model, r, False)),
        ("tritonclient.grpc", lambda r: grpc_call(a.grpc, a.model, r)),
    ]
    for row in json.loads(a.rows):
        for client, call in calls:
            sent, label = call(row)
            print(json.dumps({"client": client, "row": sent, "label": label}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

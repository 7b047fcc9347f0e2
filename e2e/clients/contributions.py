#!/usr/bin/env python3
"""Asks a served Iris model for the OIP v2 `contributions` output (with `probabilities` and
`predict`) through tritonclient, and prints what came back as JSON; the caller checks the
numbers (e2e/tests/explain.rs computes them by hand from the artifact).

    VENV=$(e2e/clients/setup.sh)
    "$VENV/bin/python" e2e/clients/contributions.py --http 127.0.0.1:5001 --grpc 127.0.0.1:8081 \
        --model iris --rows rows.json

--rows FILE: a JSON list of [4 floats] rows, sent as one FP64 [N, 4] tensor. Modes:
  tritonclient.http binary   binary tensor extension, inputs and outputs
  tritonclient.http json     binary_data=False on inputs and outputs
  tritonclient.grpc raw      raw_input_contents in, raw_output_contents out
Output: {"<mode>": {"shape": [N, k, 5], "contributions": [flat], "probabilities": [flat],
"predict": [N ints]}, ...}; exit status 1 if a mode fails (its entry is then {"error": "..."}).
"""

import argparse
import json
import sys

OUTPUTS = ("contributions", "probabilities", "predict")


def triton_http(addr, model, rows, binary):
    import numpy as np
    import tritonclient.http as httpclient
    x = np.asarray(rows, dtype=np.float64)
    client = httpclient.InferenceServerClient(addr, connection_timeout=10, network_timeout=10)
    try:
        inp = httpclient.InferInput("input-0", list(x.shape), "FP64")
        inp.set_data_from_numpy(x, binary_data=binary)
        outs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in OUTPUTS]
        res = client.infer(model, [inp], outputs=outs)
        return {n: res.as_numpy(n) for n in OUTPUTS}
    finally:
        client.close()


def triton_grpc(addr, model, rows):
    import numpy as np
    import tritonclient.grpc as grpcclient
    x = np.asarray(rows, dtype=np.float64)
    client = grpcclient.InferenceServerClient(addr)
    try:
        inp = grpcclient.InferInput("input-0", list(x.shape), "FP64")
        inp.set_data_from_numpy(x)
        outs = [grpcclient.InferRequestedOutput(n) for n in OUTPUTS]
        res = client.infer(model, [inp], outputs=outs, client_timeout=10)
        return {n: res.as_numpy(n) for n in OUTPUTS}
    finally:
        client.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--http", required=True, help="host:port of the REST endpoint")
    ap.add_argument("--grpc", required=True, help="host:port of the gRPC endpoint")
    ap.add_argument("--model", default="iris")
    ap.add_argument("--rows", required=True, help="JSON file: a list of [4 floats]")
    args = ap.parse_args()
    with open(args.rows) as f:
        rows = json.load(f)
    modes = {
        "tritonclient.http binary": lambda: triton_http(args.http, args.model, rows, True),
        "tritonclient.http json": lambda: triton_http(args.http, args.model, rows, False),
        "tritonclient.grpc raw": lambda: triton_grpc(args.grpc, args.model, rows),
    }
    report, failed = {}, False
    for mode, call in modes.items():
        try:
            got = call()
            c = got["contributions"]
            report[mode] = {
                "shape": list(c.shape),
                "contributions": [float(v) for v in c.reshape(-1)],
                "probabilities": [float(v) for v in got["probabilities"].reshape(-1)],
                "predict": [int(v) for v in got["predict"].reshape(-1)],
            }
        except Exception as e:  # reported to the caller, which fails the test with it
            report[mode] = {"error": f"{type(e).__name__}: {e}"}
            failed = True
    json.dump(report, sys.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

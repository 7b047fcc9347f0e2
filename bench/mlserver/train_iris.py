"""Trains the peer model for bench/grpc.sh: scikit-learn LogisticRegression on the Iris data that
scikit-learn bundles (no download), saved with joblib for MLServer's scikit-learn runtime.

    python bench/mlserver/train_iris.py OUT_DIR   # writes OUT_DIR/model.joblib, model-settings.json
"""
import json
import os
import sys

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
x, y = load_iris(return_X_y=True)
model = LogisticRegression(max_iter=1000).fit(x, y)
joblib.dump(model, os.path.join(out, "model.joblib"))
with open(os.path.join(out, "model-settings.json"), "w") as f:
    json.dump({
        "name": "iris",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"},
    }, f, indent=2)
print(f"trained LogisticRegression on {len(x)} rows, training accuracy {model.score(x, y):.3f}")

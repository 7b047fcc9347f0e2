//! The codec on its own: every decoding path and refusal, and the raw output layouts.

use axum::http::StatusCode;

use super::codec::{self, Input, Values};
use super::Output;
use crate::iris::N_FEATURES;
use crate::proto::InferTensorContents;
use crate::state::{AppState, Limits};

const ROWS: [[f64; N_FEATURES]; 2] = [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]];

fn state() -> AppState {
    AppState::new(
        "iris",
        crate::test_models::multiclass().clone(),
        "builtin",
        Limits {
            max_body_bytes: 1024 * 1024,
            max_batch_rows: 10,
            ..Limits::default()
        },
    )
}

fn flat() -> Vec<f64> {
    ROWS.concat()
}

fn decode(
    datatype: &str,
    shape: &[i64],
    values: Values<'_>,
) -> Result<Vec<[f64; N_FEATURES]>, crate::error::ApiError> {
    codec::decode_rows(
        &state(),
        &Input {
            name: "x",
            datatype,
            shape,
            values,
        },
    )
}

#[track_caller]
fn refused(
    result: Result<Vec<[f64; N_FEATURES]>, crate::error::ApiError>,
    status: StatusCode,
    needle: &str,
) {
    let e = result.expect_err("should be refused");
    assert_eq!(e.status(), status, "{}", e.message());
    assert!(
        e.message().contains(needle),
        "{needle:?} not in {:?}",
        e.message()
    );
}

fn rounded_f32() -> Vec<[f64; N_FEATURES]> {
    ROWS.map(|r| r.map(|v| f64::from(v as f32))).to_vec()
}

#[test]
fn json_values() {
    assert_eq!(
        decode("FP64", &[2, 4], Values::Json(&flat())).unwrap(),
        ROWS
    );
    assert_eq!(
        decode("FP32", &[2, 4], Values::Json(&flat())).unwrap(),
        rounded_f32()
    );
    refused(
        decode("INT64", &[2, 4], Values::Json(&flat())),
        StatusCode::BAD_REQUEST,
        "FP32 or FP64",
    );
}

#[test]
#[allow(clippy::too_many_lines)] // one case per numeric type, written out to be read
fn raw_values_of_every_numeric_type() {
    let le64: Vec<u8> = flat().iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(decode("FP64", &[2, 4], Values::Raw(&le64)).unwrap(), ROWS);
    let le32: Vec<u8> = flat()
        .iter()
        .flat_map(|v| (*v as f32).to_le_bytes())
        .collect();
    assert_eq!(
        decode("FP32", &[2, 4], Values::Raw(&le32)).unwrap(),
        rounded_f32()
    );
    let ints = [5.0, 3.0, 1.0, 0.0, 6.0, 3.0, 5.0, 2.0];
    let expected = vec![[5.0, 3.0, 1.0, 0.0], [6.0, 3.0, 5.0, 2.0]];
    for (datatype, bytes) in [
        (
            "INT8",
            ints.iter()
                .flat_map(|v| (*v as i8).to_le_bytes())
                .collect::<Vec<u8>>(),
        ),
        (
            "INT16",
            ints.iter()
                .flat_map(|v| (*v as i16).to_le_bytes())
                .collect(),
        ),
        (
            "INT32",
            ints.iter()
                .flat_map(|v| (*v as i32).to_le_bytes())
                .collect(),
        ),
        (
            "INT64",
            ints.iter()
                .flat_map(|v| (*v as i64).to_le_bytes())
                .collect(),
        ),
        (
            "UINT8",
            ints.iter().flat_map(|v| (*v as u8).to_le_bytes()).collect(),
        ),
        (
            "UINT16",
            ints.iter()
                .flat_map(|v| (*v as u16).to_le_bytes())
                .collect(),
        ),
        (
            "UINT32",
            ints.iter()
                .flat_map(|v| (*v as u32).to_le_bytes())
                .collect(),
        ),
        (
            "UINT64",
            ints.iter()
                .flat_map(|v| (*v as u64).to_le_bytes())
                .collect(),
        ),
    ] {
        assert_eq!(
            decode(datatype, &[2, 4], Values::Raw(&bytes)).unwrap(),
            expected,
            "{datatype}"
        );
    }
    refused(
        decode("FP64", &[2, 4], Values::Raw(&le64[..60])),
        StatusCode::BAD_REQUEST,
        "needs 64 bytes",
    );
    refused(
        decode("FP32", &[2, 4], Values::Raw(&le64)),
        StatusCode::BAD_REQUEST,
        "needs 32 bytes",
    );
    refused(
        decode("BYTES", &[2, 4], Values::Raw(&le64)),
        StatusCode::BAD_REQUEST,
        "datatype \"BYTES\"",
    );
    let nan: Vec<u8> = [f64::NAN, 1.0, 1.0, 1.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    refused(
        decode("FP64", &[1, 4], Values::Raw(&nan)),
        StatusCode::BAD_REQUEST,
        "not a finite FP64",
    );
}

#[test]
fn typed_contents() {
    let c = InferTensorContents {
        fp64_contents: flat(),
        ..Default::default()
    };
    assert_eq!(decode("FP64", &[2, 4], Values::Contents(&c)).unwrap(), ROWS);
    let c = InferTensorContents {
        fp32_contents: flat().iter().map(|v| *v as f32).collect(),
        ..Default::default()
    };
    assert_eq!(
        decode("FP32", &[2, 4], Values::Contents(&c)).unwrap(),
        rounded_f32()
    );
    let c = InferTensorContents {
        int64_contents: vec![5, 3, 1, 0],
        int_contents: vec![6, 3, 5, 2],
        uint_contents: vec![1, 2, 3, 4],
        uint64_contents: vec![4, 3, 2, 1],
        ..Default::default()
    };
    assert_eq!(
        decode("INT64", &[1, 4], Values::Contents(&c)).unwrap(),
        [[5.0, 3.0, 1.0, 0.0]]
    );
    assert_eq!(
        decode("INT32", &[1, 4], Values::Contents(&c)).unwrap(),
        [[6.0, 3.0, 5.0, 2.0]]
    );
    assert_eq!(
        decode("UINT16", &[1, 4], Values::Contents(&c)).unwrap(),
        [[1.0, 2.0, 3.0, 4.0]]
    );
    assert_eq!(
        decode("UINT64", &[1, 4], Values::Contents(&c)).unwrap(),
        [[4.0, 3.0, 2.0, 1.0]]
    );
    // The field that matches the datatype is read: FP64 data in fp32_contents is missing.
    refused(
        decode("FP64", &[1, 4], Values::Contents(&c)),
        StatusCode::BAD_REQUEST,
        "fp64_contents has 0",
    );
}

#[test]
fn shapes_and_batch_limit() {
    for shape in [&[8][..], &[2, 4, 1], &[4, 2], &[-1, 4], &[]] {
        refused(
            decode("FP64", shape, Values::Json(&flat())),
            StatusCode::BAD_REQUEST,
            "expected [N, 4]",
        );
    }
    refused(
        decode("FP64", &[3, 4], Values::Json(&flat())),
        StatusCode::BAD_REQUEST,
        "needs 12 values",
    );
    refused(
        decode("FP64", &[11, 4], Values::Json(&flat())),
        StatusCode::PAYLOAD_TOO_LARGE,
        "limit of 10 rows",
    );
    refused(
        decode("FP64", &[i64::MAX, 4], Values::Raw(&[])),
        StatusCode::PAYLOAD_TOO_LARGE,
        "limit of 10 rows",
    );
    assert!(decode("FP64", &[0, 4], Values::Json(&[]))
        .unwrap()
        .is_empty());
}

#[test]
fn raw_outputs() {
    let state = state();
    let rows = decode("FP64", &[2, 4], Values::Json(&flat())).unwrap();
    let predictions = codec::predict(&state, &rows);
    let model = state.model();
    let mut expected = Vec::new();
    for label in ["setosa", "virginica"] {
        expected.extend_from_slice(&(label.len() as u32).to_le_bytes());
        expected.extend_from_slice(label.as_bytes());
    }
    assert_eq!(
        codec::raw(Output::Label, model, &rows, &predictions),
        expected
    );
    let classes: Vec<u8> = [0i64, 2].iter().flat_map(|c| c.to_le_bytes()).collect();
    assert_eq!(
        codec::raw(Output::Predict, model, &rows, &predictions),
        classes
    );
    let probs = codec::raw(Output::Probabilities, model, &rows, &predictions);
    assert_eq!(probs.len(), 2 * 3 * 8);
    let first: Vec<f64> = probs
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(
        first,
        codec::probabilities(&predictions).collect::<Vec<_>>()
    );
}

#[test]
fn contributions_layout_intercepts_and_probabilities() {
    let state = state();
    let rows = decode("FP64", &[2, 4], Values::Json(&flat())).unwrap();
    let predictions = codec::predict(&state, &rows);
    let model = state.model();
    let raw = codec::raw(Output::Contributions, model, &rows, &predictions);
    let values: Vec<f64> = raw
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(Output::Contributions.shape(2, 3), [2, 3, 5]);
    assert_eq!(values.len(), 2 * 3 * 5);
    assert_eq!(
        values,
        codec::contributions(model, &rows).collect::<Vec<_>>()
    );
    let s = model.scaler();
    for (n, (row, p)) in rows.iter().zip(&predictions).enumerate() {
        let logits: Vec<f64> = (0..3)
            .map(|k| {
                let at = &values[(n * 3 + k) * 5..][..5];
                // [.., 4] is the intercept; [i] is coefficient times standardised value.
                assert_eq!(at[4], model.intercepts()[k]);
                for i in 0..4 {
                    let z = (row[i] - s.means[i]) / s.stds[i];
                    assert!((at[i] - model.coefficients()[k][i] * z).abs() < 1e-12);
                }
                at.iter().sum()
            })
            .collect();
        let max = logits.iter().copied().fold(f64::MIN, f64::max);
        let total: f64 = logits.iter().map(|l| (l - max).exp()).sum();
        for (l, q) in logits.iter().zip(p.probabilities()) {
            assert!(
                ((l - max).exp() / total - q).abs() < 1e-12,
                "{logits:?} {p:?}"
            );
        }
    }
}

#[test]
fn output_selection() {
    assert_eq!(codec::select_outputs([]).unwrap(), Output::DEFAULT);
    assert_eq!(
        codec::select_outputs(["predict", "label"]).unwrap(),
        [Output::Predict, Output::Label]
    );
    assert_eq!(
        codec::select_outputs(["contributions"]).unwrap(),
        [Output::Contributions]
    );
    let e = codec::select_outputs(["score"]).unwrap_err();
    assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    assert!(e.message().contains("unknown output \"score\""));
}

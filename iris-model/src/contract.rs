//! The model server's `/metrics` contract with the operator: the metric names and the route
//! and method labels of prediction requests. The model server exports them under these names;
//! the operator's canary analysis and request-rate scaler read them by these names. One place,
//! so a rename cannot silently blind the operator (the model server's tests render its page
//! and look each name up).

/// Counter family of HTTP requests, by `route` (template) and `code`.
pub const HTTP_REQUESTS: &str = "model_server_http_requests";
/// Its sample name in the text format.
pub const HTTP_REQUESTS_TOTAL: &str = "model_server_http_requests_total";
/// Histogram family of HTTP request durations, by `route` and `code`.
pub const HTTP_DURATION: &str = "model_server_http_request_duration_seconds";
/// Its bucket samples in the text format.
pub const HTTP_DURATION_BUCKET: &str = "model_server_http_request_duration_seconds_bucket";
/// Counter family of gRPC calls, by `method` and `code`.
pub const GRPC_REQUESTS: &str = "model_server_grpc_requests";
/// Its sample name in the text format.
pub const GRPC_REQUESTS_TOTAL: &str = "model_server_grpc_requests_total";
/// Histogram family of gRPC call durations, by `method` and `code`.
pub const GRPC_DURATION: &str = "model_server_grpc_request_duration_seconds";
/// Its bucket samples in the text format.
pub const GRPC_DURATION_BUCKET: &str = "model_server_grpc_request_duration_seconds_bucket";
/// Gauge family of the population stability index of each input feature over the drift
/// window, by `feature` (absent while the window holds no row). The chart's
/// `IrisModelInputDrift` alert reads it.
pub const INPUT_DRIFT_PSI: &str = "model_server_input_drift_psi";
/// Gauge of the rows the drift window holds (what each PSI rests on).
pub const INPUT_DRIFT_WINDOW_ROWS: &str = "model_server_input_drift_window_rows";

/// Counter family of payload-log events (CloudEvents) the sink accepted (`--payload-log-url`).
pub const PAYLOAD_LOG_SENT: &str = "model_server_payload_log_sent";
/// Its sample name in the text format.
pub const PAYLOAD_LOG_SENT_TOTAL: &str = "model_server_payload_log_sent_total";
/// Counter family of payload-log events given up after the retries (the sink keeps failing).
pub const PAYLOAD_LOG_FAILED: &str = "model_server_payload_log_failed";
/// Its sample name in the text format; the operator reads it for the status.
pub const PAYLOAD_LOG_FAILED_TOTAL: &str = "model_server_payload_log_failed_total";
/// Counter family of payload-log events dropped because the queue was full.
pub const PAYLOAD_LOG_DROPPED: &str = "model_server_payload_log_dropped";
/// Its sample name in the text format.
pub const PAYLOAD_LOG_DROPPED_TOTAL: &str = "model_server_payload_log_dropped_total";
/// Gauge of the payload-log events given up in a row since the sink last accepted one (0 after
/// any success): the operator reads it to say, in the status, that the sink keeps failing.
pub const PAYLOAD_LOG_FAILING: &str = "model_server_payload_log_consecutive_failures";

/// The tutorial's prediction route.
pub const PREDICT_IRIS: &str = "/predict_iris";
/// KServe v1 predict (the `route` label is the template).
pub const V1_PREDICT: &str = "/v1/models/{name}:predict";
/// OIP v2 REST inference.
pub const V2_INFER: &str = "/v2/models/{name}/infer";
/// OIP v2 REST inference of a version.
pub const V2_VERSION_INFER: &str = "/v2/models/{name}/versions/{version}/infer";
/// The HTTP route templates that serve predictions.
pub const PREDICTION_ROUTES: [&str; 4] = [PREDICT_IRIS, V1_PREDICT, V2_INFER, V2_VERSION_INFER];
/// The gRPC method (the `method` label) that serves predictions.
pub const PREDICTION_METHOD: &str = "ModelInfer";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_names_are_the_families_with_their_text_suffixes() {
        assert_eq!(HTTP_REQUESTS_TOTAL, format!("{HTTP_REQUESTS}_total"));
        assert_eq!(GRPC_REQUESTS_TOTAL, format!("{GRPC_REQUESTS}_total"));
        assert_eq!(HTTP_DURATION_BUCKET, format!("{HTTP_DURATION}_bucket"));
        assert_eq!(GRPC_DURATION_BUCKET, format!("{GRPC_DURATION}_bucket"));
        assert_eq!(PAYLOAD_LOG_SENT_TOTAL, format!("{PAYLOAD_LOG_SENT}_total"));
        assert_eq!(
            PAYLOAD_LOG_FAILED_TOTAL,
            format!("{PAYLOAD_LOG_FAILED}_total")
        );
        assert_eq!(
            PAYLOAD_LOG_DROPPED_TOTAL,
            format!("{PAYLOAD_LOG_DROPPED}_total")
        );
    }
}

//! The Iris flower data set (Fisher, 1936; UCI Machine Learning Repository, CC BY 4.0),
//! compiled into the binary so that training needs no download at run time.
//!
//! The CSV in `data/iris.csv` is the copy shipped by `linfa-datasets` 0.8.1 (the same 150
//! rows as scikit-learn's `load_iris`), with the numeric species codes replaced by names.
//! It is parsed by a `const fn`, so a malformed file is a compile error, not a run-time one.

use crate::model::IrisClass;

/// Number of rows in the data set.
pub const N_ROWS: usize = 150;

/// Number of features per row.
pub const N_FEATURES: usize = 4;

/// Feature names in column order; every artifact and request uses this order.
pub const FEATURE_NAMES: [&str; N_FEATURES] =
    ["sepal_length", "sepal_width", "petal_length", "petal_width"];

/// One labelled row: four measurements in centimetres and the species.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IrisSample {
    /// Sepal length, sepal width, petal length, petal width (cm).
    pub features: [f64; N_FEATURES],
    /// The species.
    pub class: IrisClass,
}

const CSV: &str = include_str!("../data/iris.csv");

const HEADER: &str = "sepal_length,sepal_width,petal_length,petal_width,species\n";

static DATASET: [IrisSample; N_ROWS] = parse_csv(CSV);

/// The 150 labelled rows, in the order of the original data set (50 of each class).
pub fn dataset() -> &'static [IrisSample] {
    &DATASET
}

/// Parses the embedded CSV at compile time. Any deviation from the expected format
/// (header, 150 rows, decimal numbers, known species) fails the build.
const fn parse_csv(csv: &str) -> [IrisSample; N_ROWS] {
    let bytes = csv.as_bytes();
    let header = HEADER.as_bytes();
    let mut pos = 0;
    while pos < header.len() {
        assert!(bytes[pos] == header[pos], "iris.csv: unexpected header");
        pos += 1;
    }
    let mut rows = [IrisSample {
        features: [0.0; N_FEATURES],
        class: IrisClass::Setosa,
    }; N_ROWS];
    let mut row = 0;
    while row < N_ROWS {
        let mut col = 0;
        while col < N_FEATURES {
            let (value, next) = parse_decimal(bytes, pos);
            assert!(bytes[next] == b',', "iris.csv: expected ',' after a number");
            rows[row].features[col] = value;
            pos = next + 1;
            col += 1;
        }
        let (class, next) = parse_species(bytes, pos);
        assert!(bytes[next] == b'\n', "iris.csv: expected end of line");
        rows[row].class = class;
        pos = next + 1;
        row += 1;
    }
    assert!(pos == bytes.len(), "iris.csv: more than 150 rows");
    rows
}

/// Parses `digits[.digits]` starting at `pos`; returns the value and the position after it.
/// `mantissa / 10^k` with both exactly representable is correctly rounded, so the result
/// equals what `str::parse::<f64>` gives.
const fn parse_decimal(bytes: &[u8], mut pos: usize) -> (f64, usize) {
    let mut mantissa: u64 = 0;
    let mut scale: u64 = 1;
    let mut seen_digit = false;
    let mut seen_point = false;
    while pos < bytes.len() {
        let b = bytes[pos];
        if b.is_ascii_digit() {
            mantissa = mantissa * 10 + (b - b'0') as u64;
            if seen_point {
                scale *= 10;
            }
            seen_digit = true;
        } else if b == b'.' && !seen_point {
            seen_point = true;
        } else {
            break;
        }
        pos += 1;
    }
    assert!(seen_digit, "iris.csv: expected a number");
    (mantissa as f64 / scale as f64, pos)
}

const fn parse_species(bytes: &[u8], pos: usize) -> (IrisClass, usize) {
    let candidates = [
        (IrisClass::Setosa, "setosa"),
        (IrisClass::Versicolor, "versicolor"),
        (IrisClass::Virginica, "virginica"),
    ];
    let mut i = 0;
    while i < candidates.len() {
        let name = candidates[i].1.as_bytes();
        if starts_with_at(bytes, pos, name) {
            return (candidates[i].0, pos + name.len());
        }
        i += 1;
    }
    panic!("iris.csv: unknown species")
}

const fn starts_with_at(bytes: &[u8], pos: usize, prefix: &[u8]) -> bool {
    if pos + prefix.len() > bytes.len() {
        return false;
    }
    let mut i = 0;
    while i < prefix.len() {
        if bytes[pos + i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_150_rows_50_per_class() {
        let data = dataset();
        assert_eq!(data.len(), 150);
        for class in IrisClass::ALL {
            assert_eq!(data.iter().filter(|s| s.class == class).count(), 50);
        }
    }

    #[test]
    fn const_parser_matches_std_parse() {
        let data = dataset();
        for (line, sample) in CSV.lines().skip(1).zip(data) {
            let fields: Vec<&str> = line.split(',').collect();
            for (i, value) in sample.features.iter().enumerate() {
                let expected: f64 = fields[i].parse().unwrap();
                assert_eq!(value.to_bits(), expected.to_bits(), "{line}");
            }
            assert_eq!(sample.class.as_str(), fields[4]);
        }
        assert_eq!(data[0].features, [5.1, 3.5, 1.4, 0.2]);
        assert_eq!(data[149].features, [5.9, 3.0, 5.1, 1.8]);
    }
}

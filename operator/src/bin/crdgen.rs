//! Prints the IrisModel CustomResourceDefinition as YAML: `cargo run -p operator --bin crdgen`.

use kube::CustomResourceExt;
use operator::crd::IrisModel;

fn main() -> Result<(), serde_yaml::Error> {
    print!("{}", serde_yaml::to_string(&IrisModel::crd())?);
    Ok(())
}

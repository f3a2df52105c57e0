//! Datasets as Fed-BioMed prints them: one grid table per node.

use comfy_table::Table;
use fedreq_protocol::node::DATASET_FIELDS;
use serde_json::Value;

/// tabulate's `grid` format, which Fed-BioMed uses: `+---+` rules, `+===+` under the header.
const GRID: &str = "||--+=++|-+++++++++";

/// After the required fields, the optional ones of a v4.4 entry, in its order.
const V44_OPTIONAL: [&str; 2] = ["dataset_parameters", "dlp_id"];

/// `Node: ID | Number of Datasets: N` and a grid table, or a line when the node has no data.
pub fn datasets(node: &str, datasets: &[Value]) -> String {
    let title = format!("Node: {node} | Number of Datasets: {}", datasets.len());
    if datasets.is_empty() {
        return format!("{title}\nNo data has been set up for this node.");
    }
    // Every key, as v4.4 tabulates them (`dataset_id` included): the fields a node stores, in
    // the order v4.4 stores them, then any other key in name order.
    let mut columns: Vec<&str> = DATASET_FIELDS.into_iter().chain(V44_OPTIONAL).collect();
    for key in datasets
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|d| d.keys())
    {
        if !columns.contains(&key.as_str()) {
            columns.push(key);
        }
    }
    columns.retain(|column| datasets.iter().any(|d| d.get(column).is_some()));
    let mut table = Table::new();
    table.load_preset(GRID).set_header(&columns);
    for dataset in datasets {
        table.add_row(columns.iter().map(|column| match dataset.get(column) {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }));
    }
    format!("{title}\n{table}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_grid_per_node_and_a_line_for_an_empty_one() {
        let table = datasets(
            "n1",
            &[
                json!({"name": "ds0", "data_type": "csv", "tags": ["a"], "description": "d",
                       "shape": [1, 2], "dataset_id": "dataset-0", "dataset_parameters": null}),
            ],
        );
        let lines: Vec<&str> = table.lines().collect();
        let header: Vec<&str> = lines[2]
            .split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            header,
            [
                "name",
                "data_type",
                "tags",
                "description",
                "shape",
                "dataset_id",
                "dataset_parameters"
            ],
            "every key, in the node's order"
        );
        assert!(lines[4].contains("dataset-0"), "{table}");
        assert_eq!(lines[0], "Node: n1 | Number of Datasets: 1");
        assert!(
            lines[1].starts_with("+-") && lines[3].starts_with("+="),
            "{table}"
        );
        assert!(
            lines[4].contains("| ds0") && lines[4].contains("[\"a\"]"),
            "{table}"
        );
        assert_eq!(
            datasets("n2", &[]),
            "Node: n2 | Number of Datasets: 0\nNo data has been set up for this node."
        );
    }
}

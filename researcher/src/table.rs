//! Datasets as Fed-BioMed prints them: one grid table per node.

use comfy_table::Table;
use serde_json::Value;

/// tabulate's `grid` format, which Fed-BioMed uses: `+---+` rules, `+===+` under the header.
const GRID: &str = "||--+=++|-+++++++++";

/// The columns Fed-BioMed shows.
const COLUMNS: [&str; 5] = ["name", "data_type", "tags", "description", "shape"];

/// `Node: ID | Number of Datasets: N` and a grid table, or a line when the node has no data.
pub fn datasets(node: &str, datasets: &[Value]) -> String {
    let title = format!("Node: {node} | Number of Datasets: {}", datasets.len());
    if datasets.is_empty() {
        return format!("{title}\nNo data has been set up for this node.");
    }
    let mut table = Table::new();
    table.load_preset(GRID).set_header(COLUMNS);
    for dataset in datasets {
        table.add_row(COLUMNS.map(|column| match dataset.get(column) {
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
                json!({"name": "ds0", "data_type": "csv", "tags": ["a"], "description": "d", "shape": [1, 2]}),
            ],
        );
        let lines: Vec<&str> = table.lines().collect();
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

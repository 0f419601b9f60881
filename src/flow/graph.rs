//! Drawings of a flow for `phonetree graph`: Mermaid or Graphviz DOT.

use std::fmt::Write;

use super::compile::{FlowId, FlowSet, Kind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

/// Draws one flow: a box per node (`name` and kind), an arrow per
/// transition labelled with its key or condition. `None` for an unknown id.
pub fn render(set: &FlowSet, id: FlowId, format: GraphFormat) -> Option<String> {
    let flow = set.flow(id)?;
    let mut out = String::new();
    let node_id = |i: usize| format!("n{i}");
    let label = |i: usize| {
        let n = &flow.nodes[i];
        let extra = match &n.kind {
            Kind::Subflow { flow, .. } => format!(" {}", set.flow_name(*flow)),
            Kind::Transfer { target, .. } => format!(" {target}"),
            Kind::Queue(q) => format!(" {}", q.queue),
            Kind::Callback(c) => format!(" {}", c.queue),
            _ => String::new(),
        };
        format!("{}\\n({}{extra})", n.name, n.kind.name())
    };
    match format {
        GraphFormat::Mermaid => {
            let _ = writeln!(out, "flowchart TD");
            for i in 0..flow.nodes.len() {
                let text = label(i).replace('"', "'").replace("\\n", "<br/>");
                let _ = writeln!(out, "  {}[\"{text}\"]", node_id(i));
            }
            let _ = writeln!(
                out,
                "  start((start)) --> {}",
                node_id(flow.start.0 as usize)
            );
            for (i, n) in flow.nodes.iter().enumerate() {
                for (l, to) in n.kind.labelled_successors() {
                    let to = node_id(to.0 as usize);
                    if l.is_empty() {
                        let _ = writeln!(out, "  {} --> {to}", node_id(i));
                    } else {
                        let l = l.replace('"', "'");
                        let _ = writeln!(out, "  {} -->|\"{l}\"| {to}", node_id(i));
                    }
                }
            }
        }
        GraphFormat::Dot => {
            let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "digraph \"{}\" {{", esc(&flow.name));
            let _ = writeln!(out, "  node [shape=box];");
            let _ = writeln!(out, "  start [shape=circle];");
            for i in 0..flow.nodes.len() {
                let text = esc(&label(i)).replace("\\\\n", "\\n");
                let _ = writeln!(out, "  {} [label=\"{text}\"];", node_id(i));
            }
            let _ = writeln!(out, "  start -> {};", node_id(flow.start.0 as usize));
            for (i, n) in flow.nodes.iter().enumerate() {
                for (l, to) in n.kind.labelled_successors() {
                    let to = node_id(to.0 as usize);
                    if l.is_empty() {
                        let _ = writeln!(out, "  {} -> {to};", node_id(i));
                    } else {
                        let _ = writeln!(out, "  {} -> {to} [label=\"{}\"];", node_id(i), esc(&l));
                    }
                }
            }
            let _ = writeln!(out, "}}");
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Source, compile};
    use std::path::PathBuf;

    fn demo() -> FlowSet {
        let cat = crate::flow::compile::tests::demo_catalog();
        let src = Source {
            path: PathBuf::from("flows/main.yaml"),
            text: include_str!("../../flows/main.yaml").to_string(),
        };
        compile(&[src], &cat, 1).unwrap().0
    }

    #[test]
    fn mermaid_of_demo() {
        let set = demo();
        let id = set.flow_by_name("main").unwrap();
        let m = render(&set, id, GraphFormat::Mermaid).unwrap();
        assert!(m.starts_with("flowchart TD\n"));
        assert!(m.contains("  n0[\"welcome<br/>(play)\"]\n"));
        assert!(m.contains("  start((start)) --> n0\n"));
        assert!(m.contains("  n1 -->|\"1\"| n2\n"));
        assert!(m.contains("  n1 -->|\"max failures\"| n5\n"));
        assert!(render(&set, FlowId(9), GraphFormat::Mermaid).is_none());
    }

    #[test]
    fn dot_of_demo() {
        let set = demo();
        let d = render(&set, FlowId(0), GraphFormat::Dot).unwrap();
        assert!(d.starts_with("digraph \"main\" {\n"));
        assert!(d.contains("  n0 [label=\"welcome\\n(play)\"];\n"));
        assert!(d.contains("  n1 -> n2 [label=\"1\"];\n"));
        assert!(d.ends_with("}\n"));
    }

    #[test]
    fn queue_and_callback_nodes_show_their_queue_and_every_way_out() {
        let set = demo();
        let id = set.flow_by_name("main").unwrap();
        let m = render(&set, id, GraphFormat::Mermaid).unwrap();
        let n = |name: &str| {
            let i = set.node_names(id).position(|x| x == name).unwrap();
            format!("n{i}")
        };
        assert!(m.contains(&format!(
            "  {}[\"agent_queue<br/>(queue support)\"]\n",
            n("agent_queue")
        )));
        assert!(m.contains(&format!(
            "  {}[\"book_callback<br/>(callback support)\"]\n",
            n("book_callback")
        )));
        for (label, to) in [
            ("leave 1", "book_callback"),
            ("overflow", "queue_overflow"),
            ("no_agents", "queue_no_agents"),
            ("full", "queue_no_agents"),
            ("failed", "queue_no_agents"),
        ] {
            let edge = format!("  {} -->|\"{label}\"| {}\n", n("agent_queue"), n(to));
            assert!(m.contains(&edge), "{edge} not in\n{m}");
        }
        let edge = format!(
            "  {} -->|\"duplicate\"| {}\n",
            n("book_callback"),
            n("callback_duplicate")
        );
        assert!(m.contains(&edge), "{m}");
    }
}

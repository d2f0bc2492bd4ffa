//! Stage graph layout in dependency layers, top to bottom: a stage sits one
//! layer below its deepest dependency, and within a layer stages are ordered
//! by where their dependencies sit, so that edges cross little.

/// A stage to place: its dependencies (indices into the same slice) and the
/// lines of text its box must hold.
#[derive(Debug, Clone)]
pub struct Node {
    pub deps: Vec<usize>,
    pub lines: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// One box per node, in the order given.
    pub boxes: Vec<Rect>,
    pub layers: Vec<usize>,
    pub width: f64,
    pub height: f64,
}

pub const MARGIN: f64 = 16.0;
const GAP_X: f64 = 24.0;
const GAP_Y: f64 = 44.0;
/// Width of one character of the page's 13px sans-serif, generously.
pub const CHAR_WIDTH: f64 = 7.4;
pub const LINE_HEIGHT: f64 = 17.0;
pub const PADDING: f64 = 10.0;
const MIN_WIDTH: f64 = 140.0;

pub fn layout(nodes: &[Node]) -> Layout {
    let layers = layers(nodes);
    let depth = layers.iter().max().map_or(0, |d| d + 1);
    let boxes_size: Vec<(f64, f64)> = nodes.iter().map(size).collect();

    // Order each layer by the mean position of the node's dependencies in
    // the layers above (the barycentre heuristic), then by input order.
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); depth];
    let mut position = vec![0.0f64; nodes.len()];
    for (layer, row) in rows.iter_mut().enumerate() {
        let mut members: Vec<(f64, usize)> = (0..nodes.len())
            .filter(|&i| layers[i] == layer)
            .map(|i| {
                let deps = &nodes[i].deps;
                let key = if deps.is_empty() {
                    i as f64
                } else {
                    deps.iter().map(|&d| position[d]).sum::<f64>() / deps.len() as f64
                };
                (key, i)
            })
            .collect();
        members.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (slot, &(_, i)) in members.iter().enumerate() {
            position[i] = slot as f64;
        }
        *row = members.into_iter().map(|(_, i)| i).collect();
    }

    let row_width = |row: &Vec<usize>| -> f64 {
        row.iter().map(|&i| boxes_size[i].0).sum::<f64>()
            + GAP_X * row.len().saturating_sub(1) as f64
    };
    let inner_width = rows.iter().map(row_width).fold(0.0, f64::max);
    let mut boxes = vec![
        Rect {
            x: 0.0,
            y: 0.0,
            width: 0.0,
            height: 0.0
        };
        nodes.len()
    ];
    let mut y = MARGIN;
    for row in &rows {
        let mut x = MARGIN + (inner_width - row_width(row)) / 2.0;
        let height = row.iter().map(|&i| boxes_size[i].1).fold(0.0, f64::max);
        for &i in row {
            let (width, h) = boxes_size[i];
            boxes[i] = Rect {
                x,
                y,
                width,
                height: h,
            };
            x += width + GAP_X;
        }
        y += height + GAP_Y;
    }
    let height = if rows.is_empty() {
        2.0 * MARGIN
    } else {
        y - GAP_Y + MARGIN
    };
    Layout {
        boxes,
        layers,
        width: inner_width + 2.0 * MARGIN,
        height,
    }
}

/// Layer of each node: 0 without dependencies, else one more than the
/// deepest dependency. A dependency cycle (which planning rejects) cannot
/// loop here: a node being visited counts as layer 0.
fn layers(nodes: &[Node]) -> Vec<usize> {
    fn visit(i: usize, nodes: &[Node], memo: &mut [Option<usize>], open: &mut [bool]) -> usize {
        if let Some(layer) = memo[i] {
            return layer;
        }
        if open[i] {
            return 0;
        }
        open[i] = true;
        let layer = nodes[i]
            .deps
            .iter()
            .filter(|&&d| d < nodes.len())
            .map(|&d| visit(d, nodes, memo, open) + 1)
            .max()
            .unwrap_or(0);
        open[i] = false;
        memo[i] = Some(layer);
        layer
    }
    let mut memo = vec![None; nodes.len()];
    let mut open = vec![false; nodes.len()];
    (0..nodes.len())
        .map(|i| visit(i, nodes, &mut memo, &mut open))
        .collect()
}

fn size(node: &Node) -> (f64, f64) {
    let longest = node
        .lines
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0);
    let width = (longest as f64 * CHAR_WIDTH + 2.0 * PADDING).max(MIN_WIDTH);
    let height = node.lines.len().max(1) as f64 * LINE_HEIGHT + 2.0 * PADDING;
    (width.ceil(), height)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(deps: &[usize]) -> Node {
        Node {
            deps: deps.to_vec(),
            lines: vec!["stage".into(), "Ready".into()],
        }
    }

    #[test]
    fn stages_sit_one_layer_below_their_deepest_dependency() {
        // a <- b <- d, a <- c, d also depends on a directly.
        let nodes = [node(&[]), node(&[0]), node(&[0]), node(&[1, 0])];
        let l = layout(&nodes);
        assert_eq!(l.layers, [0, 1, 1, 2]);
        assert!(l.boxes[1].y > l.boxes[0].y + l.boxes[0].height);
        assert_eq!(l.boxes[1].y, l.boxes[2].y);
        assert!(l.boxes[3].y > l.boxes[1].y + l.boxes[1].height);
        // Nothing overlaps within a layer and everything fits the canvas.
        assert!(l.boxes[1].x + l.boxes[1].width <= l.boxes[2].x);
        for b in &l.boxes {
            assert!(b.x >= MARGIN && b.x + b.width <= l.width - MARGIN + 0.001);
            assert!(b.y + b.height <= l.height);
        }
    }

    #[test]
    fn layers_follow_their_dependencies_order_and_cycles_do_not_hang() {
        // Two roots; the second root's dependent comes first in input order
        // but is drawn under the second root.
        let nodes = [node(&[]), node(&[]), node(&[1]), node(&[0])];
        let l = layout(&nodes);
        assert!(l.boxes[3].x < l.boxes[2].x, "{l:?}");
        let cyclic = [node(&[1]), node(&[0])];
        assert_eq!(layout(&cyclic).layers.len(), 2);
        assert_eq!(layout(&[]).boxes.len(), 0);
    }

    #[test]
    fn boxes_grow_with_their_longest_line() {
        let mut long = node(&[]);
        long.lines
            .push("pre: a-very-long-migration-job-name (weight -5)".into());
        let l = layout(&[node(&[]), long]);
        assert!(l.boxes[1].width > l.boxes[0].width);
        assert!(l.boxes[1].height > l.boxes[0].height);
    }
}

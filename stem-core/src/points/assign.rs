//! Candidate pairs by grid hashing, connected components, and an exact min-cost assignment
//! per component.

use super::MatchedPair;
use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A candidate pair: (predicted index, true index, distance).
type Edge = (usize, usize, f64);

/// All pairs with distance `≤ radius`, sorted by predicted then true index.
fn candidates(pred: &[[f64; 2]], truth: &[[f64; 2]], radius: f64) -> Vec<Edge> {
    // `as` saturates for huge coordinates; such points still get exact distance checks.
    let cell = |p: &[f64; 2]| {
        (
            (p[0] / radius).floor() as i64,
            (p[1] / radius).floor() as i64,
        )
    };
    let mut grid: Vec<(i64, i64, usize)> = truth
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (cy, cx) = cell(p);
            (cy, cx, i)
        })
        .collect();
    grid.sort_unstable();
    let r2 = radius * radius;
    pred.par_iter()
        .enumerate()
        .flat_map_iter(|(i, p)| {
            let (cy, cx) = cell(p);
            let mut found: Vec<Edge> = Vec::new();
            for dy in -1..=1i64 {
                for dx in -1..=1i64 {
                    let key = (cy.saturating_add(dy), cx.saturating_add(dx));
                    if (dy != 0 && key.0 == cy) || (dx != 0 && key.1 == cx) {
                        continue; // saturated: that cell was already visited
                    }
                    let lo = grid.partition_point(|g| (g.0, g.1) < key);
                    for &(gy, gx, j) in &grid[lo..] {
                        if (gy, gx) != key {
                            break;
                        }
                        let (ey, ex) = (p[0] - truth[j][0], p[1] - truth[j][1]);
                        let d2 = ey * ey + ex * ex;
                        if d2 <= r2 {
                            let d = d2.sqrt();
                            // Guard the inclusive boundary against sqrt/square rounding.
                            if d <= radius {
                                found.push((i, j, d));
                            }
                        }
                    }
                }
            }
            found.sort_unstable_by_key(|e| e.1);
            found
        })
        .collect()
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

/// One connected component with local indices.
struct Component {
    /// Global predicted indices of the local rows.
    preds: Vec<usize>,
    /// Global true indices of the local columns.
    truths: Vec<usize>,
    /// Edges `(local row, local column, distance)`, sorted by row.
    edges: Vec<(usize, usize, f64)>,
}

/// The optimal matching (maximum cardinality, then minimum total distance), sorted by
/// predicted index.
pub(super) fn optimal_pairs(
    pred: &[[f64; 2]],
    truth: &[[f64; 2]],
    radius: f64,
) -> Vec<MatchedPair> {
    let edges = candidates(pred, truth, radius);
    if edges.is_empty() {
        return Vec::new();
    }
    let np = pred.len();
    // Union-find over predicted nodes 0..np and true nodes np..np+nt.
    let mut parent: Vec<usize> = (0..np + truth.len()).collect();
    for &(i, j, _) in &edges {
        let (a, b) = (find(&mut parent, i), find(&mut parent, np + j));
        if a != b {
            parent[a.max(b)] = a.min(b);
        }
    }
    // Components numbered in order of first appearance (deterministic); local indices.
    let mut comp_of_root = vec![usize::MAX; parent.len()];
    let mut local = vec![usize::MAX; parent.len()];
    let mut comps: Vec<Component> = Vec::new();
    for &(i, j, d) in &edges {
        let root = find(&mut parent, i);
        if comp_of_root[root] == usize::MAX {
            comp_of_root[root] = comps.len();
            comps.push(Component {
                preds: Vec::new(),
                truths: Vec::new(),
                edges: Vec::new(),
            });
        }
        let c = &mut comps[comp_of_root[root]];
        if local[i] == usize::MAX {
            local[i] = c.preds.len();
            c.preds.push(i);
        }
        if local[np + j] == usize::MAX {
            local[np + j] = c.truths.len();
            c.truths.push(j);
        }
        c.edges.push((local[i], local[np + j], d));
    }
    let mut pairs: Vec<MatchedPair> = comps
        .par_iter()
        .flat_map_iter(|c| {
            solve(c.preds.len(), c.truths.len(), &c.edges)
                .into_iter()
                .map(|(r, k, d)| MatchedPair {
                    predicted: c.preds[r],
                    truth: c.truths[k],
                    distance_px: d,
                })
        })
        .collect();
    pairs.sort_unstable_by_key(|p| p.predicted);
    pairs
}

/// Lexicographic cost: (number of unmatched rows, total distance).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cost {
    miss: i64,
    dist: f64,
}

impl Cost {
    const ZERO: Cost = Cost { miss: 0, dist: 0.0 };
    const INF: Cost = Cost {
        miss: i64::MAX,
        dist: f64::INFINITY,
    };
    fn add(self, o: Cost) -> Cost {
        Cost {
            miss: self.miss + o.miss,
            dist: self.dist + o.dist,
        }
    }
    fn sub(self, o: Cost) -> Cost {
        Cost {
            miss: self.miss - o.miss,
            dist: self.dist - o.dist,
        }
    }
    fn cmp(&self, o: &Cost) -> Ordering {
        self.miss.cmp(&o.miss).then(self.dist.total_cmp(&o.dist))
    }
}

/// Min-heap entry.
struct Entry(Cost, usize);
impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.cmp(&self.0).then(o.1.cmp(&self.1))
    }
}

const NONE: usize = usize::MAX;

/// Exact assignment on one component with `m` rows (predictions), `n` columns (truths) and
/// candidate `edges` sorted by row. Returns `(row, column, distance)` for matched rows.
///
/// Row `i` may also take its private dummy column `n + i` at cost (1 unmatched, 0). Rows are
/// inserted one at a time along a shortest augmenting path (Dijkstra on reduced costs with
/// node potentials), which keeps the assignment of the inserted rows optimal; with all rows
/// inserted it is the min-cost assignment, i.e. maximum cardinality, then minimum distance.
fn solve(m: usize, n: usize, edges: &[(usize, usize, f64)]) -> Vec<(usize, usize, f64)> {
    if edges.len() == 1 {
        return edges.to_vec();
    }
    // Fast path: a single prediction or a single truth takes its nearest partner.
    if m == 1 || n == 1 {
        let best = edges
            .iter()
            .min_by(|a, b| a.2.total_cmp(&b.2).then((a.0, a.1).cmp(&(b.0, b.1))));
        return best.into_iter().copied().collect();
    }
    // CSR adjacency per row.
    let mut start = vec![0usize; m + 1];
    edges.iter().for_each(|e| start[e.0 + 1] += 1);
    for i in 0..m {
        start[i + 1] += start[i];
    }
    let cols = n + m;
    let cost_of = |d: f64| Cost { miss: 0, dist: d };
    let dummy = Cost { miss: 1, dist: 0.0 };
    let mut phi_row = vec![Cost::ZERO; m];
    let mut phi_col = vec![Cost::ZERO; cols];
    let mut row_of_col = vec![NONE; cols];
    let mut col_of_row = vec![NONE; m];
    let mut dist = vec![Cost::INF; cols];
    let mut prev = vec![NONE; cols];
    let mut done = vec![false; cols];
    let mut touched: Vec<usize> = Vec::new();
    let mut popped: Vec<usize> = Vec::new();
    let mut heap = BinaryHeap::new();

    for s in 0..m {
        // Relax the edges (real and dummy) leaving row `r`, reached at distance `dr`.
        let relax = |r: usize,
                     dr: Cost,
                     dist: &mut [Cost],
                     prev: &mut [usize],
                     done: &[bool],
                     touched: &mut Vec<usize>,
                     heap: &mut BinaryHeap<Entry>| {
            let arcs = edges[start[r]..start[r + 1]]
                .iter()
                .map(|e| (e.1, cost_of(e.2)))
                .chain(std::iter::once((n + r, dummy)));
            for (k, c) in arcs {
                if done[k] {
                    continue;
                }
                let nd = dr.add(c).add(phi_row[r]).sub(phi_col[k]);
                if nd.cmp(&dist[k]) == Ordering::Less {
                    if dist[k].miss == i64::MAX {
                        touched.push(k);
                    }
                    dist[k] = nd;
                    prev[k] = r;
                    heap.push(Entry(nd, k));
                }
            }
        };
        relax(
            s,
            Cost::ZERO,
            &mut dist,
            &mut prev,
            &done,
            &mut touched,
            &mut heap,
        );
        let mut target = NONE;
        while let Some(Entry(d, j)) = heap.pop() {
            if done[j] || d.cmp(&dist[j]) != Ordering::Equal {
                continue;
            }
            done[j] = true;
            popped.push(j);
            if row_of_col[j] == NONE {
                target = j;
                break;
            }
            let r = row_of_col[j];
            relax(r, d, &mut dist, &mut prev, &done, &mut touched, &mut heap);
        }
        // The dummy column of `s` is always free, so a target always exists.
        if target == NONE {
            break;
        }
        let big_d = dist[target];
        // Potentials: φ += d − D on finalised nodes (a uniform shift of all others by −D
        // is omitted, it leaves reduced costs unchanged).
        phi_row[s] = phi_row[s].sub(big_d);
        for &j in &popped {
            let delta = dist[j].sub(big_d);
            phi_col[j] = phi_col[j].add(delta);
            if row_of_col[j] != NONE {
                let r = row_of_col[j];
                phi_row[r] = phi_row[r].add(delta);
            }
        }
        // Augment along the path back to `s`.
        let mut j = target;
        loop {
            let r = prev[j];
            let next = col_of_row[r];
            row_of_col[j] = r;
            col_of_row[r] = j;
            if r == s {
                break;
            }
            j = next;
        }
        for &k in &touched {
            dist[k] = Cost::INF;
            prev[k] = NONE;
            done[k] = false;
        }
        touched.clear();
        popped.clear();
        heap.clear();
    }
    (0..m)
        .filter(|&r| col_of_row[r] < n)
        .map(|r| {
            let k = col_of_row[r];
            let d = edges[start[r]..start[r + 1]]
                .iter()
                .find(|e| e.1 == k)
                .map_or(f64::NAN, |e| e.2);
            (r, k, d)
        })
        .collect()
}

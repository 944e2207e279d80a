// Compiled evaluator for ensembles of binary regression trees with numerical splits (the
// trees of a LightGBM model). Pure C++17, no Python headers: the binding (bindings.cpp) checks
// dtypes and shapes and hands plain pointers to this core.
//
// Tree layout (LightGBM's own numbering, one entry per tree in the offset arrays):
//   internal nodes of tree t: [node_offset[t], node_offset[t+1]), node 0 of a tree is its root;
//   leaves of tree t:         [leaf_offset[t], leaf_offset[t+1]);
//   left_child / right_child: >= 0 is an internal node of the same tree, < 0 is leaf ~child;
//   decision_type bits:       bit 0 categorical (refused), bit 1 default_left,
//                             bits 2-3 missing type (0 none, 1 zero, 2 NaN).
// A tree with one leaf and no internal node is a constant.
//
// Split semantics (as LightGBM documents them for numerical splits): with missing type "none" a
// NaN feature value is read as 0.0; with "zero" a value within +-1e-35 (the float 1e-35f) takes
// the default direction; with "NaN" a NaN takes the default direction; otherwise
// `value <= threshold` goes left. Scores are summed over trees in tree order in double precision.
#pragma once

#include <cstdint>
#include <vector>

namespace regmix {
namespace trees {

// Borrowed flat arrays describing a forest; nothing is copied until `Forest` is built.
struct ForestArrays {
    int64_t num_features = 0;
    int64_t num_trees = 0;
    const int64_t* node_offset = nullptr;   // [num_trees + 1]
    const int64_t* leaf_offset = nullptr;   // [num_trees + 1]
    const int32_t* split_feature = nullptr; // [node_offset[num_trees]]
    const double* threshold = nullptr;      // [node_offset[num_trees]]
    const int32_t* decision_type = nullptr; // [node_offset[num_trees]]
    const int32_t* left_child = nullptr;    // [node_offset[num_trees]]
    const int32_t* right_child = nullptr;   // [node_offset[num_trees]]
    const double* leaf_value = nullptr;     // [leaf_offset[num_trees]]
};

// A validated forest, pre-compiled for fast evaluation. Construction throws
// std::invalid_argument naming the first inconsistency (bad offsets, a child out of range, a
// node reached twice, a categorical split, a feature index out of range).
class Forest {
public:
    explicit Forest(const ForestArrays& arrays);

    int64_t num_features() const { return num_features_; }
    int64_t num_trees() const { return num_trees_; }
    int64_t num_nodes() const { return static_cast<int64_t>(feature_.size()); }
    int64_t num_leaves() const { return static_cast<int64_t>(leaf_value_.size()); }
    int64_t max_leaves_per_tree() const { return max_leaves_; }

    // Scores of `num_rows` rows of `x` (row-major, `num_features` doubles each) into `out`,
    // on up to `num_threads` threads (0: all hardware threads). Fast path: thresholds become
    // per-feature bin indices and each tree is evaluated for a block of rows at once by combining
    // leaf-reachability bit masks (branch-free, vectorised); rows that need missing-value
    // handling take the exact node-by-node path.
    void predict(const double* x, int64_t num_rows, double* out, int num_threads) const;

    // The plain node-by-node traversal of every tree (the reference the fast path is tested
    // against), single-threaded.
    void predict_reference(const double* x, int64_t num_rows, double* out) const;

private:
    struct TreeInfo {
        int64_t node_begin;   // first internal node (global index)
        int64_t num_nodes;    // internal nodes
        int64_t leaf_begin;   // first leaf (global index)
        int64_t num_leaves;
        int64_t mask_begin;   // first entry of this tree in the mask-kernel arrays
    };

    double traverse(const TreeInfo& tree, const double* row) const;
    bool row_needs_exact_path(const double* row) const;
    void predict_range(const double* x, int64_t begin, int64_t end, double* out) const;

    int64_t num_features_ = 0;
    int64_t num_trees_ = 0;
    int64_t max_leaves_ = 0;
    std::vector<TreeInfo> trees_;
    // Nodes in LightGBM's numbering (global index = node_begin + local index).
    std::vector<int32_t> feature_;
    std::vector<double> threshold_;
    std::vector<uint8_t> default_left_;
    std::vector<uint8_t> missing_type_;
    std::vector<int32_t> left_;
    std::vector<int32_t> right_;
    std::vector<double> leaf_value_;
    // Per feature: sorted distinct thresholds (bins), and whether any split on it treats NaN
    // or zero as missing (rows holding such values take the exact path).
    std::vector<std::vector<double>> bins_;
    std::vector<uint8_t> nan_is_missing_;
    std::vector<uint8_t> zero_is_missing_;
    // Mask kernel, per internal node of every tree with at most 64 leaves, in tree order:
    // feature, threshold as a bin index (`bin(x) <= thr_bin` iff `x <= threshold`), and the mask
    // of leaves (by in-order position) that stay possible when the split goes right.
    std::vector<int32_t> mask_feature_;
    std::vector<int32_t> mask_thr_bin_;
    std::vector<uint64_t> mask_keep_;
    // Leaf values in in-order position (global index = leaf_begin + position).
    std::vector<double> leaf_value_inorder_;
};

}  // namespace trees
}  // namespace regmix

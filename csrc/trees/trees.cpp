// Compiled tree-ensemble evaluator: see trees.h for the layout and the split semantics.
#include "trees.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

namespace regmix {
namespace trees {

namespace {

// LightGBM's "is zero" band for missing type "zero": the float 1e-35f, widened to double.
const double kZeroBand = static_cast<double>(1e-35f);

// Rows per block of the mask kernel: the block's bins (num_features x kBlock int32) and masks
// stay in the L1 cache while every tree is applied to them.
constexpr int64_t kBlock = 256;
// Below this many rows a second thread costs more than it saves.
constexpr int64_t kRowsPerThreadMin = 4096;

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument(what); }

inline int lowest_bit(uint64_t m) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctzll(m);
#else
    int i = 0;
    while (!(m & 1u)) {
        m >>= 1;
        ++i;
    }
    return i;
#endif
}

// Index of x among the sorted distinct thresholds: the number of thresholds strictly below x.
// For threshold number j: x <= bins[j] exactly when bin_of(x) <= j.
inline int32_t bin_of(const std::vector<double>& bins, double x) {
    return static_cast<int32_t>(std::lower_bound(bins.begin(), bins.end(), x) - bins.begin());
}

// Rows evaluated together in registers by the mask kernel.
constexpr int64_t kLanes = 32;

// Applies one tree to a block of kBlock rows: `sums[r] += value of the leaf row r reaches`.
// For each group of kLanes rows, every split of the tree is evaluated (no branches, no
// dependence between splits) and combined into a mask of the leaves still possible: a split
// that goes left (x <= threshold) keeps every leaf, one that goes right drops its left subtree's
// leaves. The leaf reached is the leftmost (in-order) leaf still possible at the end.
template <typename Mask>
inline void mask_tree(const int32_t* __restrict feature, const int32_t* __restrict thr_bin,
                      const uint64_t* __restrict keep, int64_t num_nodes, const int32_t* __restrict bins,
                      const double* __restrict leaves, double* __restrict sums) {
    for (int64_t r0 = 0; r0 < kBlock; r0 += kLanes) {
        Mask acc[kLanes];
        for (int64_t j = 0; j < kLanes; ++j) acc[j] = static_cast<Mask>(~Mask(0));
        for (int64_t k = 0; k < num_nodes; ++k) {
            const int32_t* __restrict col = bins + static_cast<int64_t>(feature[k]) * kBlock + r0;
            const int32_t t = thr_bin[k];
            const Mask m = static_cast<Mask>(keep[k]);
            for (int64_t j = 0; j < kLanes; ++j) {
                acc[j] &= static_cast<Mask>(m | static_cast<Mask>(Mask(0) - Mask(col[j] <= t)));
            }
        }
        for (int64_t j = 0; j < kLanes; ++j) sums[r0 + j] += leaves[lowest_bit(acc[j])];
    }
}

#if defined(__GNUC__) || defined(__clang__)
// The same for trees of at most 32 leaves, written with GCC/Clang vector extensions so that it
// is vectorised for whichever instruction set the caller is compiled for (SSE2 pairs by
// default, AVX2 / AVX-512 in the run-time dispatched clones).
typedef int32_t VecI32 __attribute__((vector_size(32)));
constexpr int64_t kVec = 8;  // lanes of VecI32

template <>
inline void mask_tree<uint32_t>(const int32_t* __restrict feature, const int32_t* __restrict thr_bin,
                                const uint64_t* __restrict keep, int64_t num_nodes,
                                const int32_t* __restrict bins, const double* __restrict leaves,
                                double* __restrict sums) {
    static_assert(kLanes == 4 * kVec, "the kernel keeps four vectors of masks");
    for (int64_t r0 = 0; r0 < kBlock; r0 += kLanes) {
        // Masks as signed lanes: a comparison yields -1 (all bits) or 0 per lane.
        VecI32 a0 = VecI32{} - 1, a1 = a0, a2 = a0, a3 = a0;
        for (int64_t k = 0; k < num_nodes; ++k) {
            const int32_t* col = bins + static_cast<int64_t>(feature[k]) * kBlock + r0;
            const VecI32 t = VecI32{} + thr_bin[k];
            const VecI32 m = VecI32{} + static_cast<int32_t>(static_cast<uint32_t>(keep[k]));
            VecI32 c0, c1, c2, c3;
            std::memcpy(&c0, col, sizeof c0);
            std::memcpy(&c1, col + kVec, sizeof c1);
            std::memcpy(&c2, col + 2 * kVec, sizeof c2);
            std::memcpy(&c3, col + 3 * kVec, sizeof c3);
            a0 &= (c0 <= t) | m;
            a1 &= (c1 <= t) | m;
            a2 &= (c2 <= t) | m;
            a3 &= (c3 <= t) | m;
        }
        int32_t acc[kLanes];
        std::memcpy(acc, &a0, sizeof a0);
        std::memcpy(acc + kVec, &a1, sizeof a1);
        std::memcpy(acc + 2 * kVec, &a2, sizeof a2);
        std::memcpy(acc + 3 * kVec, &a3, sizeof a3);
        for (int64_t j = 0; j < kLanes; ++j) {
            sums[r0 + j] += leaves[lowest_bit(static_cast<uint32_t>(acc[j]))];
        }
    }
}
#endif

// The hot loop, compiled for several instruction sets where the toolchain can dispatch at
// run time (GCC on x86-64 Linux); the plain build is used elsewhere.
#if defined(REGMIX_TARGET_CLONES)
// set on the command line (benchmarks of the variants)
#elif defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define REGMIX_TARGET_CLONES __attribute__((flatten, target_clones("avx512f", "avx2", "default")))
#else
#define REGMIX_TARGET_CLONES
#endif

struct BlockKernelArgs {
    int64_t num_trees;
    const int64_t* tree_mask_begin;  // [num_trees], -1 for trees the kernel does not cover
    const int64_t* tree_num_nodes;   // [num_trees]
    const int64_t* tree_leaf_begin;  // [num_trees]
    const int64_t* tree_num_leaves;  // [num_trees]
    const int32_t* feature;
    const int32_t* thr_bin;
    const uint64_t* keep;
    const double* leaf_value_inorder;
};

// Applies every tree the kernel covers to one block of kBlock rows (bins: num_features columns of
// kBlock bin indices; rows past the end of the data hold bin 0 and their sums are ignored).
// Applies every tree the kernel covers to one block of kBlock rows (bins: num_features columns of
// kBlock bin indices; rows past the end of the data hold bin 0 and their sums are ignored).
REGMIX_TARGET_CLONES
void block_kernel(const BlockKernelArgs& a, const int32_t* __restrict bins, double* __restrict sums) {
    for (int64_t t = 0; t < a.num_trees; ++t) {
        const int64_t mb = a.tree_mask_begin[t];
        const double* leaves = a.leaf_value_inorder + a.tree_leaf_begin[t];
        const int64_t nl = a.tree_num_leaves[t];
        if (mb < 0) continue;  // evaluated node by node by the caller
        if (nl == 1) {
            for (int64_t r = 0; r < kBlock; ++r) sums[r] += leaves[0];
        } else if (nl <= 32) {
            mask_tree<uint32_t>(a.feature + mb, a.thr_bin + mb, a.keep + mb, a.tree_num_nodes[t], bins, leaves, sums);
        } else {
            mask_tree<uint64_t>(a.feature + mb, a.thr_bin + mb, a.keep + mb, a.tree_num_nodes[t], bins, leaves, sums);
        }
    }
}

// Assign in-order positions to the leaves under `node` and fill, for every internal node, the
// mask of leaves that stay possible when the split goes right (all but its left subtree's).
// Returns the number of leaves under `node`. Recursion depth is bounded by the leaf count (<= 64).
int64_t layout_subtree(int32_t node, int64_t first_pos, const int32_t* left, const int32_t* right,
                       std::vector<int64_t>& leaf_pos, std::vector<uint64_t>& keep) {
    if (node < 0) {
        leaf_pos[static_cast<size_t>(~node)] = first_pos;
        return 1;
    }
    const int64_t nl = layout_subtree(left[node], first_pos, left, right, leaf_pos, keep);
    const int64_t nr = layout_subtree(right[node], first_pos + nl, left, right, leaf_pos, keep);
    uint64_t left_bits = 0;
    for (int64_t p = first_pos; p < first_pos + nl; ++p) left_bits |= (uint64_t(1) << p);
    keep[static_cast<size_t>(node)] = ~left_bits;
    return nl + nr;
}

}  // namespace

Forest::Forest(const ForestArrays& a) : num_features_(a.num_features), num_trees_(a.num_trees) {
    if (a.num_features < 1) fail("num_features must be at least 1, got " + std::to_string(a.num_features));
    if (a.num_trees < 0) fail("num_trees must be >= 0, got " + std::to_string(a.num_trees));
    if (a.node_offset[0] != 0 || a.leaf_offset[0] != 0) fail("node_offset[0] and leaf_offset[0] must be 0");
    const int64_t total_nodes = a.node_offset[a.num_trees];
    const int64_t total_leaves = a.leaf_offset[a.num_trees];
    for (int64_t t = 0; t < a.num_trees; ++t) {
        if (a.node_offset[t + 1] < a.node_offset[t] || a.leaf_offset[t + 1] <= a.leaf_offset[t])
            fail("tree " + std::to_string(t) + ": offsets must increase (and a tree needs a leaf)");
    }

    feature_.assign(a.split_feature, a.split_feature + total_nodes);
    threshold_.assign(a.threshold, a.threshold + total_nodes);
    left_.assign(a.left_child, a.left_child + total_nodes);
    right_.assign(a.right_child, a.right_child + total_nodes);
    leaf_value_.assign(a.leaf_value, a.leaf_value + total_leaves);
    default_left_.resize(static_cast<size_t>(total_nodes));
    missing_type_.resize(static_cast<size_t>(total_nodes));
    nan_is_missing_.assign(static_cast<size_t>(num_features_), 0);
    zero_is_missing_.assign(static_cast<size_t>(num_features_), 0);
    bins_.assign(static_cast<size_t>(num_features_), {});

    for (int64_t t = 0; t < num_trees_; ++t) {
        const int64_t nb = a.node_offset[t], ne = a.node_offset[t + 1];
        const int64_t lb = a.leaf_offset[t], le = a.leaf_offset[t + 1];
        const std::string where = "tree " + std::to_string(t) + ": ";
        const int64_t nn = ne - nb, nl = le - lb;
        if (nn != nl - 1)
            fail(where + std::to_string(nn) + " internal nodes for " + std::to_string(nl) +
                 " leaves; a binary tree has one fewer");
        // Every node and leaf must be reached exactly once from the root (node 0).
        std::vector<uint8_t> seen_node(static_cast<size_t>(nn), 0), seen_leaf(static_cast<size_t>(nl), 0);
        std::vector<int32_t> stack;
        if (nn > 0) {
            stack.push_back(0);
        } else {
            seen_leaf[0] = 1;
        }
        while (!stack.empty()) {
            const int32_t node = stack.back();
            stack.pop_back();
            if (node >= 0) {
                if (node >= nn) fail(where + "child " + std::to_string(node) + " out of range");
                if (seen_node[static_cast<size_t>(node)]++) fail(where + "node reached twice");
                stack.push_back(a.left_child[nb + node]);
                stack.push_back(a.right_child[nb + node]);
            } else {
                const int64_t leaf = ~static_cast<int64_t>(node);
                if (leaf >= nl) fail(where + "leaf " + std::to_string(leaf) + " out of range");
                if (seen_leaf[static_cast<size_t>(leaf)]++) fail(where + "leaf reached twice");
            }
        }
        for (int64_t k = nb; k < ne; ++k) {
            const int32_t dt = a.decision_type[k];
            const int32_t f = a.split_feature[k];
            if (dt & 1) fail(where + "categorical split (decision_type " + std::to_string(dt) + ") is not supported");
            if (dt & ~int32_t(0xE)) fail(where + "unknown decision_type " + std::to_string(dt));
            const int32_t missing = (dt >> 2) & 3;
            if (missing == 3) fail(where + "unknown missing type in decision_type " + std::to_string(dt));
            if (f < 0 || f >= num_features_)
                fail(where + "split on feature " + std::to_string(f) + ", the model has " +
                     std::to_string(num_features_) + " features");
            if (std::isnan(a.threshold[k])) fail(where + "NaN threshold");
            default_left_[static_cast<size_t>(k)] = static_cast<uint8_t>((dt >> 1) & 1);
            missing_type_[static_cast<size_t>(k)] = static_cast<uint8_t>(missing);
            if (missing == 2) nan_is_missing_[static_cast<size_t>(f)] = 1;
            if (missing == 1) zero_is_missing_[static_cast<size_t>(f)] = 1;
            bins_[static_cast<size_t>(f)].push_back(a.threshold[k]);
        }
        max_leaves_ = std::max(max_leaves_, nl);
        trees_.push_back(TreeInfo{nb, nn, lb, nl, -1});
    }
    for (auto& b : bins_) {
        std::sort(b.begin(), b.end());
        b.erase(std::unique(b.begin(), b.end()), b.end());
    }

    // The mask kernel's arrays, for trees of at most 64 leaves.
    leaf_value_inorder_.assign(leaf_value_.size(), 0.0);
    for (auto& tree : trees_) {
        if (tree.num_leaves > 64) continue;
        tree.mask_begin = static_cast<int64_t>(mask_feature_.size());
        std::vector<int64_t> leaf_pos(static_cast<size_t>(tree.num_leaves), 0);
        std::vector<uint64_t> keep(static_cast<size_t>(tree.num_nodes), 0);
        if (tree.num_nodes > 0) {
            layout_subtree(0, 0, left_.data() + tree.node_begin, right_.data() + tree.node_begin, leaf_pos, keep);
        }
        for (int64_t l = 0; l < tree.num_leaves; ++l) {
            leaf_value_inorder_[static_cast<size_t>(tree.leaf_begin + leaf_pos[static_cast<size_t>(l)])] =
                leaf_value_[static_cast<size_t>(tree.leaf_begin + l)];
        }
        for (int64_t k = 0; k < tree.num_nodes; ++k) {
            const size_t g = static_cast<size_t>(tree.node_begin + k);
            const auto& b = bins_[static_cast<size_t>(feature_[g])];
            mask_feature_.push_back(feature_[g]);
            mask_thr_bin_.push_back(bin_of(b, threshold_[g]));
            mask_keep_.push_back(keep[static_cast<size_t>(k)]);
        }
    }
}

double Forest::traverse(const TreeInfo& tree, const double* row) const {
    if (tree.num_nodes == 0) return leaf_value_[static_cast<size_t>(tree.leaf_begin)];
    int32_t node = 0;
    while (node >= 0) {
        const size_t g = static_cast<size_t>(tree.node_begin + node);
        double v = row[feature_[g]];
        const uint8_t missing = missing_type_[g];
        if (std::isnan(v) && missing != 2) v = 0.0;
        const bool is_missing = (missing == 1 && v >= -kZeroBand && v <= kZeroBand) || (missing == 2 && std::isnan(v));
        const bool go_left = is_missing ? (default_left_[g] != 0) : (v <= threshold_[g]);
        node = go_left ? left_[g] : right_[g];
    }
    return leaf_value_[static_cast<size_t>(tree.leaf_begin + ~static_cast<int64_t>(node))];
}

bool Forest::row_needs_exact_path(const double* row) const {
    for (int64_t f = 0; f < num_features_; ++f) {
        const double v = row[f];
        if (std::isnan(v) && nan_is_missing_[static_cast<size_t>(f)]) return true;
        // With missing type "zero", NaN reads as 0.0 and so is missing as well.
        if (zero_is_missing_[static_cast<size_t>(f)] && (std::isnan(v) || (v >= -kZeroBand && v <= kZeroBand)))
            return true;
    }
    return false;
}

void Forest::predict_reference(const double* x, int64_t num_rows, double* out) const {
    for (int64_t r = 0; r < num_rows; ++r) {
        const double* row = x + r * num_features_;
        double s = 0.0;
        for (const auto& tree : trees_) s += traverse(tree, row);
        out[r] = s;
    }
}

void Forest::predict_range(const double* x, int64_t begin, int64_t end, double* out) const {
    std::vector<int64_t> mask_begin(static_cast<size_t>(num_trees_)), num_nodes(static_cast<size_t>(num_trees_)),
        leaf_begin(static_cast<size_t>(num_trees_)), num_leaves(static_cast<size_t>(num_trees_));
    bool any_big = false;
    for (int64_t t = 0; t < num_trees_; ++t) {
        const auto& tree = trees_[static_cast<size_t>(t)];
        mask_begin[static_cast<size_t>(t)] = tree.mask_begin;
        num_nodes[static_cast<size_t>(t)] = tree.num_nodes;
        leaf_begin[static_cast<size_t>(t)] = tree.leaf_begin;
        num_leaves[static_cast<size_t>(t)] = tree.num_leaves;
        any_big = any_big || tree.mask_begin < 0;
    }
    const BlockKernelArgs args{num_trees_,          mask_begin.data(),     num_nodes.data(),
                               leaf_begin.data(),   num_leaves.data(),     mask_feature_.data(),
                               mask_thr_bin_.data(), mask_keep_.data(),    leaf_value_inorder_.data()};
    std::vector<int32_t> bins(static_cast<size_t>(num_features_ * kBlock), 0);
    std::vector<double> sums(kBlock);
    for (int64_t b0 = begin; b0 < end; b0 += kBlock) {
        const int64_t n = std::min(kBlock, end - b0);
        for (int64_t f = 0; f < num_features_; ++f) {
            const auto& fb = bins_[static_cast<size_t>(f)];
            int32_t* col = bins.data() + f * kBlock;
            if (fb.empty()) continue;  // no split reads this feature
            std::fill(col + n, col + kBlock, 0);
            for (int64_t r = 0; r < n; ++r) {
                double v = x[(b0 + r) * num_features_ + f];
                if (std::isnan(v)) v = 0.0;  // rows where NaN is "missing" are redone exactly below
                col[r] = bin_of(fb, v);
            }
        }
        std::fill(sums.begin(), sums.end(), 0.0);
        if (!any_big) {
            block_kernel(args, bins.data(), sums.data());
        } else {
            // Keep the tree order of the sum: run the kernel one tree at a time around big trees.
            for (int64_t t = 0; t < num_trees_; ++t) {
                const auto& tree = trees_[static_cast<size_t>(t)];
                if (tree.mask_begin < 0) {
                    for (int64_t r = 0; r < n; ++r) sums[static_cast<size_t>(r)] += traverse(tree, x + (b0 + r) * num_features_);
                } else {
                    BlockKernelArgs one = args;
                    one.num_trees = 1;
                    one.tree_mask_begin += t;
                    one.tree_num_nodes += t;
                    one.tree_leaf_begin += t;
                    one.tree_num_leaves += t;
                    block_kernel(one, bins.data(), sums.data());
                }
            }
        }
        for (int64_t r = 0; r < n; ++r) {
            const double* row = x + (b0 + r) * num_features_;
            if (row_needs_exact_path(row)) {
                double s = 0.0;
                for (const auto& tree : trees_) s += traverse(tree, row);
                out[b0 + r] = s;
            } else {
                out[b0 + r] = sums[static_cast<size_t>(r)];
            }
        }
    }
}

void Forest::predict(const double* x, int64_t num_rows, double* out, int num_threads) const {
    if (num_rows <= 0) return;
    int64_t threads = num_threads > 0 ? num_threads : static_cast<int64_t>(std::thread::hardware_concurrency());
    threads = std::max<int64_t>(1, std::min(threads, num_rows / kRowsPerThreadMin));
    if (threads == 1) {
        predict_range(x, 0, num_rows, out);
        return;
    }
    // Contiguous chunks, each a whole number of blocks except the last.
    const int64_t blocks = (num_rows + kBlock - 1) / kBlock;
    const int64_t per = (blocks + threads - 1) / threads;
    std::vector<std::thread> pool;
    std::vector<std::exception_ptr> errors(static_cast<size_t>(threads));
    for (int64_t i = 0; i < threads; ++i) {
        const int64_t b = std::min(num_rows, i * per * kBlock);
        const int64_t e = std::min(num_rows, (i + 1) * per * kBlock);
        if (b >= e) break;
        pool.emplace_back([this, x, b, e, out, &errors, i]() {
            try {
                predict_range(x, b, e, out);
            } catch (...) {
                errors[static_cast<size_t>(i)] = std::current_exception();
            }
        });
    }
    for (auto& th : pool) th.join();
    for (auto& err : errors) {
        if (err) std::rethrow_exception(err);
    }
}

}  // namespace trees
}  // namespace regmix

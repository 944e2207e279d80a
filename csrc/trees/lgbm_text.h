// The tree section of a LightGBM text model (the lines from the first "Tree=" line to "end of
// trees"), read into the flat arrays of trees.h in one pass. Pure C++17, no Python headers.
//
// Only the text as LightGBM writes it is read: every tree has each of num_leaves,
// split_feature, threshold, decision_type, left_child, right_child and leaf_value exactly once,
// with num_leaves - 1 (num_leaves for leaf_value) plain decimal numbers separated by spaces,
// is_linear and num_cat (where present) are 0, lines end with "\n" or "\r\n", and nothing but
// printable ASCII and spaces appears. Anything else makes `read_tree_section` return false,
// and the caller reads the text its slower, line-by-line way (which names what is wrong).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace regmix {
namespace trees {

struct TreeSection {
    std::vector<int64_t> node_offset{0};
    std::vector<int64_t> leaf_offset{0};
    std::vector<int32_t> split_feature;
    std::vector<double> threshold;
    std::vector<int32_t> decision_type;
    std::vector<int32_t> left_child;
    std::vector<int32_t> right_child;
    std::vector<double> leaf_value;
};

// Reads `body` (starting at a "Tree=" line, ending before "end of trees") into `out`; false
// where the text is not exactly as described above (then `out` is unspecified).
bool read_tree_section(std::string_view body, TreeSection& out);

}  // namespace trees
}  // namespace regmix
